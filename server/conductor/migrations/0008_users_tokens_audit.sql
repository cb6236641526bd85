-- Users managed through the API: a disabled user cannot log in and its tokens are revoked.
ALTER TABLE users ADD COLUMN disabled INTEGER NOT NULL DEFAULT 0;

-- Every user session, service token and API key the conductor signs, so each can be listed and
-- revoked before it expires (the token itself is never stored). kind: session (a user's login),
-- service (a service token) or api_key (an app's key; scopes: what it grants, space-separated).
CREATE TABLE issued_tokens (
    jti        TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('session', 'service', 'api_key')),
    user_id    TEXT,
    name       TEXT NOT NULL,
    scopes     TEXT NOT NULL DEFAULT '',
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX issued_tokens_by_user ON issued_tokens (user_id) WHERE revoked_at IS NULL;
CREATE INDEX issued_tokens_by_expiry ON issued_tokens (expires_at);

-- The revocation feed services follow: one row per revoked token until it expires. seq only grows
-- (AUTOINCREMENT never reuses a number), so a follower asks for what came after the last it saw.
CREATE TABLE revocations (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    jti        TEXT NOT NULL,
    expires_at INTEGER NOT NULL
);

-- Who changed what in the conductor. actor: user:<name>, service:<name>, worker:<id> or
-- anonymous; result: the HTTP status answered.
CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at         INTEGER NOT NULL,
    actor      TEXT NOT NULL,
    action     TEXT NOT NULL,
    target     TEXT NOT NULL,
    status     INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    client_ip  TEXT
);
CREATE INDEX audit_events_by_actor ON audit_events (actor, id);
CREATE INDEX audit_events_by_at ON audit_events (at);
