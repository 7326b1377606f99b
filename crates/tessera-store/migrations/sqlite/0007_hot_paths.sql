-- Issue 9, the sign-in hot paths. First, a version number for the applications and
-- connections, raised by every change to either table whoever makes it (this node, another
-- node, the CLI, a hand-written statement).
-- Nodes keep applications and connections in memory for the sign-in hot paths and read this
-- number inside the statements those paths make anyway, so a change applies at once without
-- a read of its own per request.
CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version INTEGER NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 1);
CREATE TRIGGER clients_version_ins AFTER INSERT ON clients
    BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER clients_version_upd AFTER UPDATE ON clients
    BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER clients_version_del AFTER DELETE ON clients
    BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER connections_version_ins AFTER INSERT ON connections
    BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER connections_version_upd AFTER UPDATE ON connections
    BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;
CREATE TRIGGER connections_version_del AFTER DELETE ON connections
    BEGIN UPDATE config_version SET version = version + 1 WHERE id = 1; END;

-- Opaque access tokens (for /userinfo) are sealed with the server secret and no longer
-- stored; what /userinfo must still refuse is a token whose grant was revoked (a replayed
-- authorization code or refresh token). Kept 31 days: no access token lives longer than 30.
CREATE TABLE revoked_grants (
    grant_id   TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_grants_at ON revoked_grants (revoked_at);
