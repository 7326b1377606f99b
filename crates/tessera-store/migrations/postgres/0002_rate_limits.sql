-- Fixed-window counters for rate limits and failed-attempt lockouts, shared by every node.
CREATE TABLE rate_limits (
    key          TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    count        BIGINT NOT NULL,
    expires_at   BIGINT NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_limits_expires ON rate_limits (expires_at);
