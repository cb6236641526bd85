// Users (admins only): who can sign in and with which role. Admins create users, make them admins
// or viewers, disable and enable them, set a new password, delete them, and see and revoke each
// user's sessions (select a user). Viewers are told the screen is for admins.

import { useState } from 'react';
import { Pressable, Text, View } from 'react-native';

import { tokenId } from '../api/session';
import { Button } from '../components/Button';
import { Card } from '../components/Card';
import { ConfirmDialog } from '../components/ConfirmDialog';
import { ErrorBanner, InfoBanner, SuccessBanner } from '../components/ErrorBanner';
import { Field } from '../components/Field';
import { PasswordField } from '../components/PasswordField';
import { Screen } from '../components/Screen';
import { Spinner } from '../components/Spinner';
import { StatusBadge } from '../components/StatusBadge';
import { Table } from '../components/Table';
import { ago, dateTime, shortId } from '../format';
import { useAction } from '../hooks/useAsync';
import { useSession } from '../hooks/useSession';
import { ROLES, useTokens, useUserActions, useUsers, type IssuedToken, type Role, type User } from '../hooks/useUsers';
import { useRouter } from '../router';
import { usersStyles as s } from './users.styles';

const ROLE_TEXT: Record<Role, string> = {
  admin: 'changes anything',
  viewer: 'looks, changes nothing',
};

/** The changes that are asked about first (each takes access away), and resetting a password. */
type Pending = { kind: 'disable' | 'demote' | 'delete' | 'password'; user: User };

export function UsersScreen({ selected }: { selected?: string }) {
  const { isAdmin } = useSession();
  return (
    <Screen
      kicker="Access"
      title="Users"
      subtitle="Who can sign in, and as what: admins change things, viewers look. Disabling a user, making an admin a viewer, setting a new password or deleting a user signs out their sessions at once."
      testID="users-screen"
    >
      {isAdmin ? (
        <UsersAdmin selected={selected} />
      ) : (
        <Card title="Users">
          <InfoBanner testID="users-admins-only">
            Only admins can see and manage users. You can change your own password with Change password, under your name in the sidebar.
          </InfoBanner>
        </Card>
      )}
    </Screen>
  );
}

function UsersAdmin({ selected }: { selected?: string }) {
  const { session, signOut } = useSession();
  const { navigate } = useRouter();
  const users = useUsers();
  const tokens = useTokens();
  const actions = useUserActions();
  const [pending, setPending] = useState<Pending | undefined>(undefined);
  const [notice, setNotice] = useState<string | undefined>(undefined);
  const me = session?.user.id;

  // Enabling and making an admin take nothing away: done at once.
  const act = useAction(async (what: 'enable' | 'promote', u: User) => {
    setNotice(undefined);
    await actions.update(u.id, what === 'enable' ? { disabled: false } : { role: 'admin' });
    await users.reload();
  });

  const sessionsOf = (u: User): number | undefined =>
    tokens.data ? tokens.data.filter((t) => t.kind === 'session' && t.user_id === u.id).length : undefined;
  const selectedUser = selected ? users.data?.find((u) => u.username === selected) : undefined;

  return (
    <>
      <NewUser
        onCreated={(u) => {
          setNotice(`Created ${u.username}, ${u.role === 'admin' ? 'an admin' : 'a viewer'}. They sign in with the password you gave.`);
          void users.reload();
        }}
        onStart={() => setNotice(undefined)}
      />
      {notice ? <SuccessBanner testID="user-notice">{notice}</SuccessBanner> : null}
      <ErrorBanner error={act.error} testID="user-action-error" />

      <Card title="Users" subtitle={users.data ? `${users.data.length} in all · select one to see its sessions` : undefined}>
        <ErrorBanner error={users.error} onRetry={() => void users.reload()} />
        {!users.data && !users.error ? <Spinner label="Loading users…" /> : null}
        {users.data ? (
          <Table
            testID="users-table"
            data={users.data}
            keyOf={(u) => u.id}
            selectedKey={selectedUser?.id}
            onPress={(u) => navigate({ name: 'users', user: u.username })}
            columns={[
              {
                key: 'user',
                title: 'User',
                flex: 1.3,
                render: (u) => (
                  <View>
                    <Text style={s.name} testID={`user-name-${u.username}`}>
                      {u.username}
                    </Text>
                    {u.id === me ? <Text style={s.you}>you</Text> : <Text style={s.sub}>{shortId(u.id)}</Text>}
                  </View>
                ),
              },
              { key: 'role', title: 'Role', flex: 0.9, render: (u) => <StatusBadge status={u.role} testID={`user-role-${u.username}`} /> },
              {
                key: 'state',
                title: 'State',
                flex: 0.9,
                render: (u) => <StatusBadge status={u.disabled ? 'disabled' : 'enabled'} testID={`user-state-${u.username}`} />,
              },
              {
                key: 'sessions',
                title: 'Sessions',
                flex: 0.7,
                render: (u) => (
                  <Text style={s.text} testID={`user-sessions-${u.username}`}>
                    {sessionsOf(u) === undefined ? '—' : String(sessionsOf(u))}
                  </Text>
                ),
              },
              { key: 'created', title: 'Created', flex: 0.8, render: (u) => ago(u.created_at) },
              {
                key: 'actions',
                title: '',
                flex: 3.6,
                render: (u: User) => (
                  <View style={s.rowActions}>
                    {u.role === 'admin' ? (
                      <Button label="Make viewer" size="small" onPress={() => setPending({ kind: 'demote', user: u })} testID={`user-demote-${u.username}`} accessibilityLabel={`Make ${u.username} a viewer`} />
                    ) : (
                      <Button label="Make admin" size="small" onPress={() => void act.run('promote', u)} testID={`user-promote-${u.username}`} accessibilityLabel={`Make ${u.username} an admin`} />
                    )}
                    {u.disabled ? (
                      <Button label="Enable" size="small" onPress={() => void act.run('enable', u)} testID={`user-enable-${u.username}`} accessibilityLabel={`Enable ${u.username}`} />
                    ) : (
                      <Button label="Disable" size="small" variant="danger" onPress={() => setPending({ kind: 'disable', user: u })} testID={`user-disable-${u.username}`} accessibilityLabel={`Disable ${u.username}`} />
                    )}
                    <Button label="Reset password…" size="small" onPress={() => setPending({ kind: 'password', user: u })} testID={`user-reset-password-${u.username}`} accessibilityLabel={`Reset the password of ${u.username}`} />
                    <Button label="Delete…" size="small" variant="danger" onPress={() => setPending({ kind: 'delete', user: u })} testID={`user-delete-${u.username}`} accessibilityLabel={`Delete ${u.username}`} />
                  </View>
                ),
              },
            ]}
          />
        ) : null}
      </Card>

      {selectedUser ? (
        <Sessions key={selectedUser.id} user={selectedUser} currentTokenId={session ? tokenId(session.token) : undefined} onRevoked={() => void tokens.reload()} />
      ) : selected && users.data ? (
        <Card title={`Sessions of ${selected}`} testID="sessions-card">
          <ErrorBanner error={new Error(`There is no user named ${selected}.`)} />
        </Card>
      ) : null}

      {pending ? (
        <UserDialog
          key={`${pending.kind}-${pending.user.id}`}
          pending={pending}
          self={pending.user.id === me}
          onCancel={() => setPending(undefined)}
          onDone={(message, signedOut) => {
            setPending(undefined);
            if (signedOut) {
              // The change revoked this session too: say so on the login screen.
              void signOut(signedOut);
              return;
            }
            if (message) setNotice(message);
            if (pending.kind === 'delete' && selected === pending.user.username) navigate({ name: 'users' });
            void users.reload();
            void tokens.reload();
          }}
        />
      ) : null}
    </>
  );
}

/** Creating a user: username, role, password (the 12-byte minimum shown as it is typed). */
function NewUser({ onCreated, onStart }: { onCreated(user: User): void; onStart(): void }) {
  const actions = useUserActions();
  const [username, setUsername] = useState('');
  const [role, setRole] = useState<Role>('viewer');
  const [password, setPassword] = useState('');
  const create = useAction(async () => {
    onStart();
    if (!username.trim()) throw new Error('Give the user a username.');
    const user = await actions.create(username.trim(), role, password);
    setUsername('');
    setPassword('');
    setRole('viewer');
    onCreated(user);
  });
  const submit = () => void create.run();

  return (
    <Card title="New user" subtitle="They sign in with this username and password, and can change the password themselves" testID="new-user">
      <View style={s.form}>
        <Field label="Username" value={username} onChangeText={setUsername} placeholder="a–z, 0–9, . _ -" autoComplete="off" style={s.formField} testID="new-user-name" onSubmit={submit} />
        <View style={s.roleGroup}>
          <Text style={s.roleLabel}>Role</Text>
          <View style={s.roles} role="radiogroup" aria-label="Role" testID="new-user-roles">
            {ROLES.map((r) => {
              const on = r === role;
              return (
                <Pressable
                  key={r}
                  role="radio"
                  aria-checked={on}
                  aria-label={r}
                  testID={`new-user-role-${r}`}
                  onPress={() => setRole(r)}
                  style={({ hovered }) => [s.role, hovered && s.roleHover, on && s.rolePicked]}
                >
                  <Text style={[s.roleText, on && s.rolePickedText]}>{r}</Text>
                </Pressable>
              );
            })}
          </View>
          <Text style={s.roleDetail}>{`${role === 'admin' ? 'An admin' : 'A viewer'} ${ROLE_TEXT[role]}.`}</Text>
        </View>
        <PasswordField label="Password" value={password} onChangeText={setPassword} onSubmit={submit} style={s.formField} testID="new-user-password" />
      </View>
      <ErrorBanner error={create.error} testID="new-user-error" />
      <View style={s.formButtons}>
        <Button label="Create user" variant="primary" onPress={submit} busy={create.running} testID="new-user-create" />
      </View>
    </Card>
  );
}

/**
 * Asks before a change that takes access away (disable, make a viewer, delete), or for the new
 * password. Stays open with the conductor's refusal (e.g. 409 last_admin) until it succeeds or is
 * cancelled. A change to one's own user that revokes this session signs out afterwards.
 */
function UserDialog({
  pending,
  self,
  onCancel,
  onDone,
}: {
  pending: Pending;
  self: boolean;
  onCancel(): void;
  /** `message`: what to say on the screen; `signedOut`: this session was revoked, why (login screen). */
  onDone(message: string | undefined, signedOut?: string): void;
}) {
  const actions = useUserActions();
  const [password, setPassword] = useState('');
  const { kind, user } = pending;
  const name = user.username;
  const act = useAction(async () => {
    switch (kind) {
      case 'disable':
        await actions.update(user.id, { disabled: true });
        onDone(undefined, self ? 'You disabled your own user, which signed you out. Another admin can enable it again.' : undefined);
        break;
      case 'demote':
        await actions.update(user.id, { role: 'viewer' });
        onDone(undefined, self ? 'You made yourself a viewer, which signed you out: sign in again to look around.' : undefined);
        break;
      case 'delete':
        await actions.remove(user.id);
        onDone(`Deleted ${name}.`, self ? 'You deleted your own user.' : undefined);
        break;
      case 'password':
        await actions.setPassword(user.id, password);
        onDone(`Set a new password for ${name}; their sessions were signed out.`, self ? 'Your password was set anew, which signed you out: sign in with the new one.' : undefined);
        break;
    }
  });
  const youToo = self ? ' This is you: you are signed out too.' : '';
  const text = {
    disable: {
      title: `Disable ${name}?`,
      message: `${name} cannot sign in until an admin enables them again, and their sessions are signed out at once.${youToo}`,
      confirm: 'Disable',
      danger: true,
    },
    demote: {
      title: `Make ${name} a viewer?`,
      message: `${name} can still sign in, but only to look. Their sessions are signed out at once (a token carries its role).${youToo}`,
      confirm: 'Make viewer',
      danger: false,
    },
    delete: {
      title: `Delete ${name}?`,
      message: `${name} is deleted and their sessions are signed out at once. This cannot be undone: the username can be given to a new user.${youToo}`,
      confirm: 'Delete',
      danger: true,
    },
    password: {
      title: `Reset ${name}’s password`,
      message: `${name} signs in with this password from now on; their sessions are signed out at once. Tell them the new password, and let them change it.${youToo}`,
      confirm: 'Set password',
      danger: false,
    },
  }[kind];

  return (
    <ConfirmDialog
      visible
      testID="user-dialog"
      title={text.title}
      message={text.message}
      confirmLabel={text.confirm}
      danger={text.danger}
      busy={act.running}
      confirmDisabled={kind === 'password' && password.length === 0}
      onCancel={onCancel}
      onConfirm={() => void act.run()}
    >
      {kind === 'password' ? <PasswordField label="New password" value={password} onChangeText={setPassword} autoFocus onSubmit={() => void act.run()} testID="user-new-password" /> : null}
      <ErrorBanner error={act.error} testID="user-dialog-error" />
    </ConfirmDialog>
  );
}

/** A user's valid sessions, the newest first, each revocable but the one in use here. */
function Sessions({ user, currentTokenId, onRevoked }: { user: User; currentTokenId: string | undefined; onRevoked(): void }) {
  const tokens = useTokens(user.id, 3000);
  const actions = useUserActions();
  const revoke = useAction(async (t: IssuedToken) => {
    await actions.revokeToken(t.id);
    await tokens.reload();
    onRevoked();
  });
  const sessions = tokens.data?.filter((t) => t.kind === 'session');

  return (
    <Card
      title={`Sessions of ${user.username}`}
      subtitle="Signed-in sessions still valid, the newest first. A revoked one is refused everywhere within about a second."
      testID="sessions-card"
    >
      {user.disabled ? <InfoBanner testID="sessions-disabled">{`${user.username} is disabled: they cannot sign in, and had their sessions signed out.`}</InfoBanner> : null}
      <ErrorBanner error={revoke.error} testID="session-action-error" />
      <ErrorBanner error={tokens.error} onRetry={() => void tokens.reload()} />
      {!sessions && !tokens.error ? <Spinner label="Loading sessions…" /> : null}
      {sessions ? (
        <Table
          testID="sessions-table"
          data={sessions}
          keyOf={(t) => t.id}
          selectedKey={currentTokenId}
          empty={`${user.username} is not signed in anywhere.`}
          columns={[
            {
              key: 'started',
              title: 'Signed in',
              flex: 1.2,
              render: (t) => (
                <View>
                  <Text style={s.text}>{ago(t.created_at)}</Text>
                  <Text style={s.sub}>{dateTime(t.created_at)}</Text>
                </View>
              ),
            },
            { key: 'expires', title: 'Expires', flex: 1.2, render: (t) => dateTime(t.expires_at) },
            {
              key: 'id',
              title: 'Token id',
              flex: 1.6,
              render: (t) => (
                <Text style={s.mono} numberOfLines={1} selectable>
                  {t.id}
                </Text>
              ),
            },
            {
              key: 'actions',
              title: '',
              flex: 1.2,
              render: (t: IssuedToken) => (
                <View style={s.rowActions}>
                  {t.id === currentTokenId ? (
                    <StatusBadge status="this session" tone="gold" testID="session-current" />
                  ) : (
                    <Button
                      label="Revoke"
                      size="small"
                      variant="danger"
                      onPress={() => void revoke.run(t)}
                      testID={`session-revoke-${t.id}`}
                      accessibilityLabel={`Revoke the session of ${user.username} from ${dateTime(t.created_at)}`}
                    />
                  )}
                </View>
              ),
            },
          ]}
        />
      ) : null}
    </Card>
  );
}
