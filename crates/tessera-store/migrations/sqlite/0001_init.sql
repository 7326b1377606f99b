-- Tessera schema, SQLite dialect. Times are Unix seconds; hashes and sealed data are BLOBs.
CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY,
    secret_hash BLOB,
    settings    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE connections (
    name       TEXT PRIMARY KEY,
    strategy   TEXT NOT NULL,
    settings   TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);

CREATE TABLE challenges (
    id           TEXT PRIMARY KEY,
    connection   TEXT NOT NULL,
    identifier   TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    code_hash    BLOB NOT NULL,
    send         TEXT NOT NULL,
    auth_params  TEXT NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    max_attempts INTEGER NOT NULL,
    ip           TEXT,
    user_agent   TEXT,
    UNIQUE (connection, identifier)
);
CREATE INDEX challenges_expires ON challenges (expires_at);

CREATE TABLE users (
    user_id        TEXT PRIMARY KEY,
    connection     TEXT NOT NULL,
    identifier     TEXT NOT NULL,
    email          TEXT,
    email_verified INTEGER NOT NULL DEFAULT 0,
    phone_number   TEXT,
    phone_verified INTEGER NOT NULL DEFAULT 0,
    name           TEXT NOT NULL,
    nickname       TEXT NOT NULL,
    picture        TEXT NOT NULL,
    created_at     INTEGER NOT NULL,
    updated_at     INTEGER NOT NULL,
    last_login     INTEGER,
    logins_count   INTEGER NOT NULL DEFAULT 0,
    blocked        INTEGER NOT NULL DEFAULT 0,
    UNIQUE (connection, identifier)
);

CREATE TABLE access_tokens (
    token_hash BLOB PRIMARY KEY,
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL
);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);

CREATE TABLE refresh_tokens (
    token_hash BLOB PRIMARY KEY,
    family_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    audience   TEXT,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    used_at    INTEGER,
    revoked_at INTEGER
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    private_sealed BLOB NOT NULL,
    public_jwk     TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at     INTEGER NOT NULL
);
-- At most one current key: first-start generation on several nodes races on this index.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (status) WHERE status = 'current';

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    payload         BLOB NOT NULL,
    created_at      INTEGER NOT NULL,
    not_after       INTEGER,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);

CREATE TABLE events (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT NOT NULL UNIQUE,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    client_id   TEXT,
    connection  TEXT,
    user_id     TEXT,
    ip          TEXT,
    user_agent  TEXT,
    description TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);
