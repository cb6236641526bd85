// The signed-in session: the conductor's token and user, kept in sessionStorage (gone when the
// tab closes; a reload keeps it).

import type { LoginResponse, User } from '@aerekos/sdk';

export interface Session {
  token: string;
  user: User;
  expiresAt: string;
}

const KEY = 'aerekos.session';

export function loadSession(): Session | null {
  try {
    const raw = sessionStorage.getItem(KEY);
    if (!raw) return null;
    const s = JSON.parse(raw) as Session;
    if (!s.token || !s.user || Date.parse(s.expiresAt) <= Date.now()) {
      sessionStorage.removeItem(KEY);
      return null;
    }
    return s;
  } catch {
    return null;
  }
}

export function saveSession(login: LoginResponse): Session {
  const s: Session = { token: login.token, user: login.user, expiresAt: login.expires_at };
  sessionStorage.setItem(KEY, JSON.stringify(s));
  return s;
}

export function clearSession(): void {
  sessionStorage.removeItem(KEY);
}

/**
 * The id of a session's token (its `jti` claim), which the conductor lists it by: read from the
 * JWT's payload without verifying it (the conductor does that). Undefined if it cannot be read.
 */
export function tokenId(token: string): string | undefined {
  try {
    const payload = token.split('.')[1];
    if (!payload) return undefined;
    const b64 = payload.replace(/-/g, '+').replace(/_/g, '/');
    const json = atob(b64 + '='.repeat((4 - (b64.length % 4)) % 4));
    const jti = (JSON.parse(json) as { jti?: unknown }).jti;
    return typeof jti === 'string' ? jti : undefined;
  } catch {
    return undefined;
  }
}
