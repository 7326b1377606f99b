-- Growing blocks after repeated failures (per identity, and per IP and identity). Each strike
-- doubles the block; strikes are forgotten a while after the last one.
CREATE TABLE blocks (
    key           TEXT PRIMARY KEY,
    strikes       BIGINT NOT NULL,
    blocked_until BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX blocks_updated ON blocks (updated_at);
