-- Tessera schema, PostgreSQL dialect. Times are Unix seconds; hashes and sealed data are BYTEAs.
CREATE TABLE clients (
    client_id   TEXT PRIMARY KEY,
    secret_hash BYTEA,
    settings    TEXT NOT NULL,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);

CREATE TABLE connections (
    name       TEXT PRIMARY KEY,
    strategy   TEXT NOT NULL,
    settings   TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL
);

CREATE TABLE challenges (
    id           TEXT PRIMARY KEY,
    connection   TEXT NOT NULL,
    identifier   TEXT NOT NULL,
    client_id    TEXT NOT NULL,
    code_hash    BYTEA NOT NULL,
    send         TEXT NOT NULL,
    auth_params  TEXT NOT NULL,
    created_at   BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    attempts     BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
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
    email_verified BOOLEAN NOT NULL DEFAULT FALSE,
    phone_number   TEXT,
    phone_verified BOOLEAN NOT NULL DEFAULT FALSE,
    name           TEXT NOT NULL,
    nickname       TEXT NOT NULL,
    picture        TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    updated_at     BIGINT NOT NULL,
    last_login     BIGINT,
    logins_count   BIGINT NOT NULL DEFAULT 0,
    blocked        BOOLEAN NOT NULL DEFAULT FALSE,
    UNIQUE (connection, identifier)
);

CREATE TABLE access_tokens (
    token_hash BYTEA PRIMARY KEY,
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX access_tokens_expires ON access_tokens (expires_at);

CREATE TABLE refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    family_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    client_id  TEXT NOT NULL,
    scope      TEXT NOT NULL,
    audience   TEXT,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    used_at    BIGINT,
    revoked_at BIGINT
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_expires ON refresh_tokens (expires_at);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    private_sealed BYTEA NOT NULL,
    public_jwk     TEXT NOT NULL,
    status         TEXT NOT NULL,
    created_at     BIGINT NOT NULL
);
-- At most one current key: first-start generation on several nodes races on this index.
CREATE UNIQUE INDEX signing_keys_one_current ON signing_keys (status) WHERE status = 'current';

CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    channel         TEXT NOT NULL,
    payload         BYTEA NOT NULL,
    created_at      BIGINT NOT NULL,
    not_after       BIGINT,
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at);

CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    at          BIGINT NOT NULL,
    kind        TEXT NOT NULL,
    client_id   TEXT,
    connection  TEXT,
    user_id     TEXT,
    ip          TEXT,
    user_agent  TEXT,
    description TEXT NOT NULL
);
CREATE INDEX events_at ON events (at);
