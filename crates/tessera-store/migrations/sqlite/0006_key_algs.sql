-- Issue 9: a current signing key per algorithm (RS256, ES256, EdDSA), not one in all.
DROP INDEX signing_keys_one_current;
CREATE UNIQUE INDEX signing_keys_one_current_per_alg ON signing_keys (alg) WHERE status = 'current';
