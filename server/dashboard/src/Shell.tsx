// The signed-in frame: the sidebar (brand, screens, the user: change password, sign out) and the
// screen.

import { useState, type ReactNode } from 'react';
import { Pressable, Text, View } from 'react-native';

import { Button } from './components/Button';
import { StatusBadge } from './components/StatusBadge';
import { useAction } from './hooks/useAsync';
import { useSession } from './hooks/useSession';
import { useRouter, type Route } from './router';
import { ChangePasswordDialog } from './screens/ChangePasswordDialog';
import { shellStyles as s } from './styles/shell.styles';

const NAV: { label: string; route: Route; matches: Route['name'][] }[] = [
  { label: 'Overview', route: { name: 'overview' }, matches: ['overview'] },
  { label: 'Workers', route: { name: 'workers' }, matches: ['workers', 'worker'] },
  { label: 'Services', route: { name: 'services' }, matches: ['services', 'service'] },
  { label: 'Jobs', route: { name: 'jobs' }, matches: ['jobs'] },
  { label: 'Logs', route: { name: 'logs' }, matches: ['logs'] },
  { label: 'Alerts', route: { name: 'alerts' }, matches: ['alerts'] },
  { label: 'Volumes', route: { name: 'volumes' }, matches: ['volumes'] },
  { label: 'Keys', route: { name: 'keys' }, matches: ['keys'] },
  { label: 'Storage', route: { name: 'storage' }, matches: ['storage'] },
  { label: 'Secrets', route: { name: 'secrets' }, matches: ['secrets'] },
  { label: 'Users', route: { name: 'users' }, matches: ['users'] },
  { label: 'Audit', route: { name: 'audit' }, matches: ['audit'] },
  { label: 'Settings', route: { name: 'settings' }, matches: ['settings'] },
];

export function Shell({ children }: { children: ReactNode }) {
  const { session, signOut } = useSession();
  const { route, navigate } = useRouter();
  const [changingPassword, setChangingPassword] = useState(false);
  // Signing out asks the conductor to revoke the token first (a moment; the button says so).
  const leave = useAction(() => signOut());
  return (
    <View style={s.root}>
      <View style={s.sidebar} role="navigation">
        <View>
          <View style={s.brand}>
            <Text style={s.brandName}>AEREKOS</Text>
            <Text style={s.brandTag}>your own cloud</Text>
            <View style={s.brandRule} />
          </View>
          <View style={s.nav}>
            {NAV.map((item) => {
              const active = item.matches.includes(route.name);
              return (
                <Pressable
                  key={item.label}
                  role="link"
                  aria-current={active ? 'page' : undefined}
                  testID={`nav-${item.route.name}`}
                  onPress={() => navigate(item.route)}
                  style={({ hovered }) => [s.navItem, hovered && s.navItemHover, active && s.navItemActive]}
                >
                  <Text style={[s.navText, active && s.navTextActive]}>{item.label}</Text>
                </Pressable>
              );
            })}
          </View>
        </View>
        <View style={s.footer}>
          <View style={s.userRow}>
            <Text style={s.user} testID="signed-in-user">
              {session?.user.username}
            </Text>
            <StatusBadge status={session?.user.role ?? ''} />
          </View>
          <View style={s.userActions}>
            <Button label="Change password" size="small" variant="ghost" onPress={() => setChangingPassword(true)} testID="change-password" />
            <Button label="Sign out" size="small" variant="ghost" onPress={() => void leave.run()} busy={leave.running} testID="sign-out" />
          </View>
        </View>
      </View>
      <View style={s.main}>{children}</View>
      {changingPassword ? <ChangePasswordDialog onClose={() => setChangingPassword(false)} /> : null}
    </View>
  );
}
