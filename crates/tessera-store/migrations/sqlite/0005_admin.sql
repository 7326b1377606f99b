-- Issue 8: users' metadata (Auth0's app_metadata and user_metadata, JSON objects), and the
-- configuration file's last applied version of each application and connection, so that a
-- start applies the file only where the file itself changed (edits made in the dashboard, the
-- Management API or the CLI otherwise survive restarts).
ALTER TABLE users ADD COLUMN app_metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE users ADD COLUMN user_metadata TEXT NOT NULL DEFAULT '{}';
ALTER TABLE clients ADD COLUMN file_hash TEXT;
ALTER TABLE connections ADD COLUMN file_hash TEXT;
CREATE INDEX events_user ON events (user_id, at);
CREATE INDEX events_client ON events (client_id, at);
