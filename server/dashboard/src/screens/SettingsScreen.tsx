// The worker registration token (copy, regenerate), the command that joins a worker, and who is
// signed in.

import { useState } from 'react';
import { Text, View } from 'react-native';

import { conductorUrl } from '../api/clients';
import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { CodeLine } from '../components/Code';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { ErrorBanner, InfoBanner } from '../components/ErrorBanner';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { dateTime } from '../format';
import { useAction } from '../hooks/useAsync';
import { useSession } from '../hooks/useSession';
import { useMe, useRegistrationToken } from '../hooks/useToken';
import { settingsStyles as s } from './settings.styles';

/** The command that joins a machine to this conductor (what `aerekos token show` prints). */
export function joinCommand(url: string, token: string): string {
  return `CONDUCTOR_URL=${url} CONDUCTOR_TOKEN=${token} aerekos worker`;
}

export function SettingsScreen() {
  const { isAdmin, session, signOut } = useSession();
  const me = useMe();
  return (
    <Screen kicker="The conductor" title="Settings" subtitle="Joining workers, and who you are signed in as." testID="settings-screen">
      <View style={s.columns}>
        {isAdmin ? <TokenCard /> : (
          <Card title="Worker registration" style={s.column}>
            <InfoBanner>Only admins can see the registration token and join workers.</InfoBanner>
          </Card>
        )}
        <Card title="Signed in" style={s.column} testID="me-card">
          <ErrorBanner error={me.error} onRetry={() => void me.reload()} />
          {!me.data && !me.error ? <Spinner /> : null}
          {me.data ? (
            <>
              <Fact label="User" value={me.data.username} testID="me-username" />
              <View style={s.fact}>
                <Text style={s.factLabel}>Role</Text>
                <StatusBadge status={me.data.role} />
              </View>
              <Fact label="User id" value={me.data.id} />
              <Fact label="Since" value={dateTime(me.data.created_at)} />
              <Fact label="Session ends" value={dateTime(session?.expiresAt)} />
            </>
          ) : null}
          <View style={s.buttons}>
            <Button label="Sign out" onPress={() => void signOut()} />
          </View>
        </Card>
      </View>
    </Screen>
  );
}

function Fact({ label, value, testID }: { label: string; value: string; testID?: string }) {
  return (
    <View style={s.fact}>
      <Text style={s.factLabel}>{label}</Text>
      <Text style={s.factValue} testID={testID}>
        {value}
      </Text>
    </View>
  );
}

function TokenCard() {
  const token = useRegistrationToken();
  const [confirm, setConfirm] = useState(false);
  const regenerate = useAction(async () => {
    await token.regenerate();
    setConfirm(false);
  });
  const t = token.data;
  return (
    <Card title="Worker registration" subtitle="A new machine presents this token to join" style={s.column} testID="token-card">
      <ErrorBanner error={token.error} onRetry={() => void token.reload()} />
      <ErrorBanner error={regenerate.error} />
      {!t && !token.error ? <Spinner label="Loading the token…" /> : null}
      {t ? (
        <>
          <Text style={s.label}>Registration token</Text>
          <CodeLine text={t.token} testID="registration-token" copyLabel="Copy token" />
          <Text style={s.note}>Created {dateTime(t.created_at)}.</Text>
          <Text style={s.label}>Join a worker: run on the new machine</Text>
          <CodeLine text={joinCommand(conductorUrl(), t.token)} testID="join-command" copyLabel="Copy command" />
          <Text style={s.note}>
            Workers that already joined keep their own credentials; regenerating only stops new machines joining with the old token.
          </Text>
          <View style={s.buttons}>
            <Button label="Regenerate token" variant="danger" onPress={() => setConfirm(true)} testID="token-regenerate" />
          </View>
        </>
      ) : null}
      <ConfirmDialog
        visible={confirm}
        title="Regenerate the token?"
        message="The current token stops working at once: machines not yet joined need the new one. Joined workers are not affected."
        confirmLabel="Regenerate"
        danger
        busy={regenerate.running}
        onCancel={() => setConfirm(false)}
        onConfirm={() => void regenerate.run()}
      />
    </Card>
  );
}
