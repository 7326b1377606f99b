-- Browser sign-in: SSO sessions, authorization codes and cross-origin login tickets. Every
-- secret is stored as a SHA-256 digest.
CREATE TABLE sessions (
    id_hash    BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ip         TEXT,
    user_agent TEXT
);
CREATE INDEX sessions_expires ON sessions (expires_at);
CREATE INDEX sessions_user ON sessions (user_id);

CREATE TABLE auth_codes (
    code_hash      BLOB PRIMARY KEY,
    grant_id       TEXT NOT NULL,
    client_id      TEXT NOT NULL,
    user_id        TEXT NOT NULL,
    redirect_uri   TEXT NOT NULL,
    scope          TEXT NOT NULL,
    audience       TEXT,
    nonce          TEXT,
    code_challenge TEXT,
    code_challenge_method TEXT,
    allow_refresh  INTEGER NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL,
    used_at        INTEGER
);
CREATE INDEX auth_codes_expires ON auth_codes (expires_at);

CREATE TABLE login_tickets (
    ticket_hash   BLOB PRIMARY KEY,
    client_id     TEXT NOT NULL,
    user_id       TEXT NOT NULL,
    connection    TEXT NOT NULL,
    co_id         TEXT NOT NULL,
    verifier_hash BLOB NOT NULL,
    created_at    INTEGER NOT NULL,
    expires_at    INTEGER NOT NULL
);
CREATE INDEX login_tickets_expires ON login_tickets (expires_at);

-- Which grant (authorization code) an access token came from, so a replayed code can revoke it.
ALTER TABLE access_tokens ADD COLUMN grant_id TEXT;
CREATE INDEX access_tokens_grant ON access_tokens (grant_id);
