// Users (admins only): the list, creating, changing (role, disabled), deleting, resetting a
// password; and the valid sessions (tokens) of a user, each revocable.

import { unwrap, type ConductorComponents } from '@aerekos/sdk';

import { useClients } from './useSession';
import { useAsync } from './useAsync';

export type User = ConductorComponents['schemas']['User'];
export type Role = ConductorComponents['schemas']['Role'];
export type IssuedToken = ConductorComponents['schemas']['IssuedToken'];

export const ROLES: Role[] = ['admin', 'viewer'];

/** Every user, by username. */
export function useUsers(intervalMs = 5000) {
  const { conductor } = useClients();
  return useAsync<User[]>(
    async () => (await unwrap(conductor.GET('/api/users'))).users.slice().sort((a, b) => a.username.localeCompare(b.username)),
    [conductor],
    intervalMs,
  );
}

/** The valid sessions and service tokens, the newest first; with `userId`, only that user's. */
export function useTokens(userId?: string, intervalMs = 5000) {
  const { conductor } = useClients();
  return useAsync<IssuedToken[]>(
    async () => {
      const { tokens } = await unwrap(conductor.GET('/api/auth/tokens', { params: { query: userId ? { user_id: userId } : {} } }));
      return tokens.slice().sort((a, b) => Date.parse(b.created_at) - Date.parse(a.created_at));
    },
    [conductor, userId],
    intervalMs,
  );
}

export function useUserActions() {
  const { conductor } = useClients();
  const path = (id: string) => ({ params: { path: { id } } });
  return {
    create: (username: string, role: Role, password: string) => unwrap(conductor.POST('/api/users', { body: { username, role, password } })),
    /** Changes the role and/or disables or enables; disabling and demoting revoke the user's sessions. */
    update: (id: string, change: { role?: Role; disabled?: boolean }) => unwrap(conductor.PATCH('/api/users/{id}', { ...path(id), body: change })),
    remove: (id: string) => unwrap(conductor.DELETE('/api/users/{id}', path(id))),
    /** Sets the user's password; their sessions are revoked. */
    setPassword: (id: string, password: string) => unwrap(conductor.POST('/api/users/{id}/password', { ...path(id), body: { password } })),
    /** Revokes one session (or service token) by its id. */
    revokeToken: (id: string) => unwrap(conductor.DELETE('/api/auth/tokens/{id}', path(id))),
  };
}
