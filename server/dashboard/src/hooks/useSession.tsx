// The session context: who is signed in, the SDK clients made with their token, sign in/out, and
// changing one's own password (which replaces the session). A 401 from any call (an expired or
// revoked token) signs out and says why on the login screen.

import { AerekosApiError, createConductorClient, login as sdkLogin, unwrap, type LoginResponse } from '@aerekos/sdk';
import { createContext, useCallback, useContext, useMemo, useRef, useState, type ReactNode } from 'react';

import { conductorUrl, createClients, type Clients } from '../api/clients';
import { clearSession, loadSession, saveSession, type Session } from '../api/session';
import { errorMessage } from '../format';

/** How long signing out waits for the conductor to revoke the token before forgetting it anyway. */
const LOGOUT_TIMEOUT_MS = 5000;

export interface SessionState {
  session: Session | null;
  clients: Clients | null;
  isAdmin: boolean;
  /** Why the user was sent back to the login screen, if they were. */
  signedOutReason: string | null;
  signIn(username: string, password: string): Promise<void>;
  /**
   * Revokes the session's token at the conductor (POST /api/auth/logout), then forgets it here.
   * `reason` is shown on the login screen.
   */
  signOut(reason?: string): Promise<void>;
  /**
   * Changes the signed-in user's password. The conductor revokes every session of theirs and
   * answers with a new one, which replaces this one (the other tabs and devices are signed out).
   */
  changePassword(currentPassword: string, newPassword: string): Promise<void>;
}

const SessionContext = createContext<SessionState | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const [signedOutReason, setReason] = useState<string | null>(null);
  const sessionRef = useRef(session);
  sessionRef.current = session;
  // While the password is being changed, the old token's 401s are expected (the conductor revokes
  // it before it answers with the new session): they do not sign the user out.
  const changingPassword = useRef(false);

  /** Forgets the session here (the token may still be valid at the conductor). */
  const forget = useCallback((reason?: string) => {
    clearSession();
    sessionRef.current = null;
    setSession(null);
    setReason(reason ?? null);
  }, []);

  /** Takes a new session (a login, a changed password); the ref too, so late 401s of the old token are ignored at once. */
  const adopt = useCallback((login: LoginResponse) => {
    const s = saveSession(login);
    sessionRef.current = s;
    setReason(null);
    setSession(s);
  }, []);

  const clients = useMemo(
    () =>
      session
        ? createClients(session.token, () => {
            // Only the current session's 401s count (a late answer to an old token does not).
            if (sessionRef.current?.token === session.token && !changingPassword.current) {
              forget('Your session has expired. Sign in again.');
            }
          })
        : null,
    [session, forget],
  );

  const signIn = useCallback(
    async (username: string, password: string) => {
      const { session: login } = await sdkLogin(conductorUrl(), username, password);
      adopt(login);
    },
    [adopt],
  );

  const signOut = useCallback(
    async (reason?: string) => {
      const current = sessionRef.current;
      let why = reason;
      if (current) {
        try {
          // A client of its own, not the session's: a 401 here (the token expired or was revoked
          // already) is no news and must not say "expired" on the login screen.
          const conductor = createConductorClient({ baseUrl: conductorUrl(), token: current.token });
          await unwrap(conductor.POST('/api/auth/logout', { signal: AbortSignal.timeout(LOGOUT_TIMEOUT_MS) }));
        } catch (e) {
          if (!(e instanceof AerekosApiError && e.status === 401) && !why) {
            why = `Signed out here, but the conductor did not confirm that the session was revoked (${errorMessage(e)}).`;
          }
        }
      }
      // Signed in again meanwhile (another tab's login does not reach this one, but be sure).
      if (sessionRef.current?.token === current?.token) forget(why);
    },
    [forget],
  );

  const changePassword = useCallback(
    async (currentPassword: string, newPassword: string) => {
      if (!clients) throw new Error('You are not signed in.');
      changingPassword.current = true;
      try {
        const login = await unwrap(
          clients.conductor.POST('/api/auth/password', { body: { current_password: currentPassword, new_password: newPassword } }),
        );
        adopt(login);
      } catch (e) {
        // Refused for the token itself (not for the passwords: a wrong current one is a 403).
        if (e instanceof AerekosApiError && e.status === 401) forget('Your session has expired. Sign in again.');
        throw e;
      } finally {
        changingPassword.current = false;
      }
    },
    [clients, adopt, forget],
  );

  const value = useMemo<SessionState>(
    () => ({ session, clients, isAdmin: session?.user.role === 'admin', signedOutReason, signIn, signOut, changePassword }),
    [session, clients, signedOutReason, signIn, signOut, changePassword],
  );
  return <SessionContext.Provider value={value}>{children}</SessionContext.Provider>;
}

export function useSession(): SessionState {
  const s = useContext(SessionContext);
  if (!s) throw new Error('useSession outside SessionProvider');
  return s;
}

/** The clients of a signed-in session (screens behind the login only). */
export function useClients(): Clients {
  const { clients } = useSession();
  if (!clients) throw new Error('useClients without a session');
  return clients;
}
