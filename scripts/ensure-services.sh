#!/usr/bin/env bash
# Makes sure what the tests talk to is there: PostgreSQL on 127.0.0.1:5432 (trust auth for
# user postgres), the aiosmtpd SMTP server, the Auth0 Python SDK and schemathesis from PyPI,
# Chromium, and the npm packages of the browser tests. Installs and starts what is missing.
set -euo pipefail

log() { printf '[ensure-services] %s\n' "$*"; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

# --- Python: aiosmtpd (a real SMTP server the full-flow tests deliver to), the official
# auth0-python SDK, pytest and schemathesis, pinned in tests/sdk/requirements.txt ---
here=$(cd "$(dirname "$0")/.." && pwd)
if ! python3 -m pip install --quiet --disable-pip-version-check -r "$here/tests/sdk/requirements.txt"; then
  echo "could not install the Python test requirements (tests/sdk/requirements.txt)" >&2
  exit 1
fi

# --- The browser tests: Debian's Chromium (driven by playwright-core; no browser download) and
# the npm packages pinned in tests/browser/package-lock.json (the real auth0-lock and auth0-js) ---
if [ ! -x /usr/bin/chromium ]; then
  log "installing Chromium from Debian's packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium >/dev/null
fi
if [ ! -x /usr/bin/chromium ]; then
  echo "Chromium is not installed (/usr/bin/chromium); the browser tests cannot run" >&2
  exit 1
fi
if ! command -v openssl >/dev/null 2>&1; then
  # The legacy-widget browser tests make their HTTPS test certificate with it.
  log "installing openssl from Debian's packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq openssl >/dev/null
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  log "installing Node.js and npm from Debian's packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq nodejs npm >/dev/null
fi
( cd "$here/tests/browser" && npm ci --no-audit --no-fund --loglevel=error >/dev/null )

# --- PostgreSQL ---
pg_up() { pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; }
if ! command -v pg_ctlcluster >/dev/null 2>&1; then
  log "installing PostgreSQL from Debian's packages"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq postgresql postgresql-client >/dev/null
  fresh_install=1
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
if [ "${fresh_install:-0}" = 1 ]; then
  # A test machine: let user postgres in over loopback without a password, as CI expects.
  hba=/etc/postgresql/$version/main/pg_hba.conf
  as_root sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+$/\1trust/' "$hba"
fi
if ! pg_up; then
  log "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
fi
for _ in $(seq 1 60); do pg_up && break; sleep 0.5; done
if ! pg_up; then
  echo "PostgreSQL is not reachable on 127.0.0.1:5432; the PostgreSQL tests cannot run" >&2
  exit 1
fi
psql -h 127.0.0.1 -U postgres -d postgres -Atqc 'select 1' >/dev/null
log "PostgreSQL $version is up; Python and npm test requirements and Chromium are installed"
