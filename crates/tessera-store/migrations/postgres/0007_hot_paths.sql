-- Issue 9, the sign-in hot paths. First, a version number for the applications and
-- connections, raised by every change to either table whoever makes it (this node, another
-- node, the CLI, a hand-written statement).
-- Nodes keep applications and connections in memory for the sign-in hot paths and read this
-- number inside the statements those paths make anyway, so a change applies at once without
-- a read of its own per request.
CREATE TABLE config_version (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    version BIGINT NOT NULL
);
INSERT INTO config_version (id, version) VALUES (1, 1);
CREATE FUNCTION tessera_bump_config_version() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE config_version SET version = version + 1 WHERE id = 1;
    RETURN NULL;
END
$$;
-- Per row, so that a statement that changes nothing (a bootstrap whose file is unchanged)
-- leaves the version, and every node's cache, alone.
CREATE TRIGGER clients_version AFTER INSERT OR UPDATE OR DELETE ON clients
    FOR EACH ROW EXECUTE FUNCTION tessera_bump_config_version();
CREATE TRIGGER connections_version AFTER INSERT OR UPDATE OR DELETE ON connections
    FOR EACH ROW EXECUTE FUNCTION tessera_bump_config_version();

-- Opaque access tokens (for /userinfo) are sealed with the server secret and no longer
-- stored; what /userinfo must still refuse is a token whose grant was revoked (a replayed
-- authorization code or refresh token). Kept 31 days: no access token lives longer than 30.
CREATE TABLE revoked_grants (
    grant_id   TEXT PRIMARY KEY,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_grants_at ON revoked_grants (revoked_at);
