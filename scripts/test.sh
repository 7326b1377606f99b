#!/usr/bin/env bash
# Runs Tessera's whole test suite: formatting, lints, unit tests, the storage and HTTP suites on
# SQLite and on PostgreSQL, the multi-node and database-restart tests, the full flow over real
# SMTP, the official Auth0 Python SDK against the real binary, and schemathesis against the real
# binary from its OpenAPI document. Installs and starts what it needs. Last, the browser
# end-to-end tests: headless Chromium, the real auth0-lock and auth0-js from npm, and the example
# app (examples/rwa).
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/ensure-services.sh

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "== tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
else
  cargo test --workspace --locked --no-fail-fast
fi
echo "== Auth0 SDK compatibility (auth0-python against the tessera binary)"
# The same build nextest just made (a plain `cargo build -p tessera` would unify features
# differently and rebuild everything): it leaves target/debug/tessera in place.
cargo test --workspace --no-run --locked
python3 -m pytest -q tests/sdk
echo "== schemathesis (the OpenAPI document at /openapi.json, fuzzed against the tessera binary)"
bash tests/schemathesis/run.sh
echo "== browser end-to-end tests (Chromium: Lock, auth0-js, the hosted page, the example app)"
bash tests/browser/run.sh
