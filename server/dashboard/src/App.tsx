import { useEffect } from 'react';

import { SessionProvider, useSession } from './hooks/useSession';
import { RouterProvider, useRouter } from './router';
import { Shell } from './Shell';
import { AlertsScreen } from './screens/AlertsScreen';
import { AuditScreen } from './screens/AuditScreen';
import { JobsScreen } from './screens/JobsScreen';
import { KeysScreen } from './screens/KeysScreen';
import { LoginScreen } from './screens/LoginScreen';
import { LogsScreen } from './screens/LogsScreen';
import { NotFoundScreen } from './screens/NotFoundScreen';
import { OverviewScreen } from './screens/OverviewScreen';
import { SecretsScreen } from './screens/SecretsScreen';
import { ServicesScreen } from './screens/ServicesScreen';
import { SettingsScreen } from './screens/SettingsScreen';
import { StorageScreen } from './screens/StorageScreen';
import { UsersScreen } from './screens/UsersScreen';
import { VolumesScreen } from './screens/VolumesScreen';
import { WorkerDetailScreen } from './screens/WorkerDetailScreen';
import { WorkersScreen } from './screens/WorkersScreen';

function Root() {
  const { session } = useSession();
  const { route, navigate } = useRouter();

  // Signed out (by the user, or by an expired token): the address becomes /login.
  // Signed in on /login: on to the overview.
  useEffect(() => {
    if (!session && route.name !== 'login') navigate({ name: 'login' }, { replace: true });
    if (session && route.name === 'login') navigate({ name: 'overview' }, { replace: true });
  }, [session, route.name, navigate]);

  if (!session || route.name === 'login') return <LoginScreen />;
  let screen;
  switch (route.name) {
    case 'overview':
      screen = <OverviewScreen range={route.range} />;
      break;
    case 'workers':
      screen = <WorkersScreen />;
      break;
    case 'worker':
      screen = <WorkerDetailScreen id={route.id} range={route.range} />;
      break;
    case 'services':
      screen = <ServicesScreen />;
      break;
    case 'service':
      screen = <ServicesScreen selected={route.service} range={route.range} />;
      break;
    case 'volumes':
      screen = <VolumesScreen selected={route.volume} />;
      break;
    case 'keys':
      screen = <KeysScreen />;
      break;
    case 'storage':
      screen = <StorageScreen bucket={route.bucket} prefix={route.prefix ?? ''} />;
      break;
    case 'secrets':
      screen = <SecretsScreen selected={route.secret} />;
      break;
    case 'jobs':
      screen = <JobsScreen selected={route.job} state={route.state} />;
      break;
    case 'logs':
      screen = (
        <LogsScreen
          service={route.service}
          instance={route.instance}
          worker={route.worker}
          level={route.level}
          contains={route.contains}
          request_id={route.request_id}
        />
      );
      break;
    case 'alerts':
      screen = <AlertsScreen />;
      break;
    case 'users':
      screen = <UsersScreen selected={route.user} />;
      break;
    case 'audit':
      screen = <AuditScreen actor={route.actor} action={route.action} failed={route.failed} />;
      break;
    case 'settings':
      screen = <SettingsScreen />;
      break;
    default:
      screen = <NotFoundScreen path={route.path} />;
  }
  return <Shell>{screen}</Shell>;
}

export function App() {
  return (
    <SessionProvider>
      <RouterProvider>
        <Root />
      </RouterProvider>
    </SessionProvider>
  );
}
