// The session context: who is signed in, the SDK clients made with their token, sign in/out.
// A 401 from any call (an expired token) signs out and says why on the login screen.

import { login as sdkLogin } from '@aerekos/sdk';
import { createContext, useCallback, useContext, useMemo, useRef, useState, type ReactNode } from 'react';

import { conductorUrl, createClients, type Clients } from '../api/clients';
import { clearSession, loadSession, saveSession, type Session } from '../api/session';

export interface SessionState {
  session: Session | null;
  clients: Clients | null;
  isAdmin: boolean;
  /** Why the user was sent back to the login screen, if they were. */
  signedOutReason: string | null;
  signIn(username: string, password: string): Promise<void>;
  signOut(reason?: string): void;
}

const SessionContext = createContext<SessionState | null>(null);

export function SessionProvider({ children }: { children: ReactNode }) {
  const [session, setSession] = useState<Session | null>(() => loadSession());
  const [signedOutReason, setReason] = useState<string | null>(null);
  const sessionRef = useRef(session);
  sessionRef.current = session;

  const signOut = useCallback((reason?: string) => {
    clearSession();
    setSession(null);
    setReason(reason ?? null);
  }, []);

  const clients = useMemo(
    () =>
      session
        ? createClients(session.token, () => {
            // Only the current session's 401s count (a late answer to an old token does not).
            if (sessionRef.current?.token === session.token) {
              signOut('Your session has expired. Sign in again.');
            }
          })
        : null,
    [session, signOut],
  );

  const signIn = useCallback(async (username: string, password: string) => {
    const { session: login } = await sdkLogin(conductorUrl(), username, password);
    setReason(null);
    setSession(saveSession(login));
  }, []);

  const value = useMemo<SessionState>(
    () => ({ session, clients, isAdmin: session?.user.role === 'admin', signedOutReason, signIn, signOut }),
    [session, clients, signedOutReason, signIn, signOut],
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
