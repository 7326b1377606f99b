#!/usr/bin/env bash
# Fuzzes Tessera's public API with schemathesis, from the OpenAPI document the server itself
# serves at /openapi.json, against the real debug binary in dev mode on a loopback port: once
# on SQLite and once on PostgreSQL (a fresh database, dropped afterwards), since each backend
# refuses different input (PostgreSQL cannot hold a NUL character, say).
#
# Checks on every response: no 5xx (not_a_server_error), the status code is one the document
# lists (status_code_conformance), the body matches the document's schema
# (response_schema_conformance) and so does its content type (content_type_conformance).
# A backend's run fails when any check fails, when the server logs an internal error or a
# panic, or when fewer than FUZZ_MIN_REQUESTS (1,000) requests were made. Each run is bounded by
# count and by time: FUZZ_MAX_EXAMPLES generated cases per operation after the coverage phase
# (default 100; about 3,000 requests, about a minute on 2 cores), at most 5 s per request, and
# FUZZ_TIMEOUT seconds (default 240), past which it fails.
#
# Needs: target/debug/tessera (cargo build -p tessera, or set TESSERA_BIN), schemathesis
# (python3 -m pip install -r tests/sdk/requirements.txt), and for PostgreSQL a server at
# TESSERA_TEST_POSTGRES_URL (default postgres://postgres@127.0.0.1:5432/postgres, as the Rust
# tests use; scripts/ensure-services.sh starts one) and psql. There is no fallback: a missing
# PostgreSQL fails the run. FUZZ_BACKENDS="sqlite" runs one backend only.
# Reproduce a run: FUZZ_SEED=<the seed it printed> FUZZ_BACKENDS=<backend> bash tests/schemathesis/run.sh
# Arguments are passed on to `schemathesis run` (e.g. --report har); FUZZ_REPORT_DIR keeps the
# reports (by default they go with the temporary folder). FUZZ_SCHEMA=<file> fuzzes with an
# edited document instead of the served one, without a rebuild.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

fail() { echo "tests/schemathesis: $*" >&2; exit 1; }

tessera_bin=${TESSERA_BIN:-$repo/target/debug/tessera}
[ -x "$tessera_bin" ] || fail "no Tessera binary at $tessera_bin: run cargo build -p tessera"
python3 -c 'import schemathesis' 2>/dev/null \
  || fail "schemathesis is missing: python3 -m pip install -r tests/sdk/requirements.txt"

backends=${FUZZ_BACKENDS:-sqlite postgres}
min_requests=${FUZZ_MIN_REQUESTS:-1000}
max_examples=${FUZZ_MAX_EXAMPLES:-100}
time_limit=${FUZZ_TIMEOUT:-240}
pg_admin_url=${TESSERA_TEST_POSTGRES_URL:-postgres://postgres@127.0.0.1:5432/postgres}
m2m_secret="fuzz-m2m-secret-0123456789abcdef0123456789"

work=$(mktemp -d)
tessera_pid=
pg_database=
stop_tessera() {
  # Only the process this script started, by its id.
  if [ -n "$tessera_pid" ] && kill -0 "$tessera_pid" 2>/dev/null; then
    kill "$tessera_pid" 2>/dev/null || true
    wait "$tessera_pid" 2>/dev/null || true
  fi
  tessera_pid=
}
drop_database() {
  if [ -n "$pg_database" ]; then
    psql "$pg_admin_url" -qXc "DROP DATABASE IF EXISTS \"$pg_database\"" >/dev/null 2>&1 || true
  fi
  pg_database=
}
cleanup() {
  stop_tessera
  drop_database
  rm -rf "$work"
}
trap cleanup EXIT

# The configuration of every run. Rate limits and lockouts are off: every request should
# reach the handlers' checks, not a 429. An SMS connection (texts go to the dev mailbox), an
# API, a public browser application that uses both connections, and a back end with Management
# scopes (the client_credentials grant), beside dev mode's demo application; the two sign with
# ES256 and EdDSA, the demo with RS256.
write_config() { # $1: the file, $2: the [database] section (or nothing)
  cat >"$1" <<EOF
$2
[rate_limits]
start_per_ip = 0
start_per_identifier = 0
start_per_client = 0
failed_attempts_per_identifier = 0
failed_attempts_per_ip_identifier = 0
token_per_ip = 0
browser_per_ip = 0

[log]
level = "warn"

[connections.sms]
per_number_per_hour = 0
per_prefix_per_hour = 0
budget_per_hour = 0

[[apis]]
identifier = "https://api.fuzz.test/"
allow_offline_access = true

[[applications]]
name = "Fuzz SPA"
client_id = "fuzz-spa"
app_type = "spa"
callbacks = ["https://spa.fuzz.test/callback"]
web_origins = ["https://spa.fuzz.test"]
allowed_logout_urls = ["https://spa.fuzz.test/"]
connections = ["email", "sms"]
signing_alg = "ES256"

[[applications]]
name = "Fuzz back end"
client_id = "fuzz-m2m"
client_secret = "$m2m_secret"
app_type = "regular_web"
callbacks = ["https://m2m.fuzz.test/callback"]
allowed_logout_urls = ["https://m2m.fuzz.test/"]
management_scopes = ["read:users", "read:clients"]
signing_alg = "EdDSA"
EOF
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Starts Tessera for backend $1 in folder $2; sets tessera_pid and base.
start_tessera() {
  local backend=$1 dir=$2 database=""
  if [ "$backend" = postgres ]; then
    command -v psql >/dev/null || fail "psql is missing (apt-get install postgresql-client)"
    pg_database="tessera_fuzz_$$_$(date +%s)"
    psql "$pg_admin_url" -qXc "CREATE DATABASE \"$pg_database\"" >/dev/null \
      || fail "cannot create a database at $pg_admin_url (is PostgreSQL running?)"
    local url=${pg_admin_url%/*}/$pg_database
    # PostgreSQL needs a configured secret: every node must share it.
    local secret
    secret=$(python3 -c 'import base64, os; print(base64.b64encode(os.urandom(32)).decode())')
    database=$(printf 'secret_key = "%s"\n\n[database]\nurl = "%s"\n' "$secret" "$url")
  fi
  write_config "$dir/tessera.toml" "$database"
  local port
  port=$(free_port)
  base="http://127.0.0.1:$port"
  # Tessera reads every TESSERA_* variable as a configuration key (and stops on an unknown
  # one), so none of the caller's (TESSERA_BIN, say) may reach it.
  (
    for v in $(compgen -e | grep '^TESSERA_' || true); do unset "$v"; done
    exec "$tessera_bin" dev --config "$dir/tessera.toml" --listen "127.0.0.1:$port" \
      --data-dir "$dir/data"
  ) >"$dir/tessera.log" 2>&1 &
  tessera_pid=$!
  local up=0
  for _ in $(seq 1 300); do
    if python3 -c "import urllib.request; urllib.request.urlopen('$base/health', timeout=1)" 2>/dev/null; then
      up=1
      break
    fi
    kill -0 "$tessera_pid" 2>/dev/null || break
    sleep 0.1
  done
  if [ "$up" != 1 ]; then
    cat "$dir/tessera.log" >&2
    fail "tessera ($backend) did not answer /health in 30 s"
  fi
}

total=0
problems=()
for backend in $backends; do
  dir="$work/$backend"
  mkdir -p "$dir"
  start_tessera "$backend" "$dir"

  # The demo application dev mode made in the data folder, and the two configured above; the
  # Management API's audience is under the issuer (dev mode names it localhost).
  clients=$(python3 - "$dir/data/dev-app.json" "$m2m_secret" <<'EOF'
import json, sys
demo = json.load(open(sys.argv[1]))
print(json.dumps([
    {"client_id": demo["client_id"], "client_secret": demo["client_secret"],
     "callback": demo["callback"], "logout": "http://localhost:5000/"},
    {"client_id": "fuzz-spa", "client_secret": None,
     "callback": "https://spa.fuzz.test/callback", "logout": "https://spa.fuzz.test/"},
    {"client_id": "fuzz-m2m", "client_secret": sys.argv[2],
     "callback": "https://m2m.fuzz.test/callback", "logout": "https://m2m.fuzz.test/",
     "scopes": ["read:users", "read:clients"]},
]))
EOF
  )
  audiences=$(python3 - "$base" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/.well-known/openid-configuration", timeout=5) as r:
    issuer = json.load(r)["issuer"]
print(json.dumps([issuer + "api/v2/", "https://api.fuzz.test/"]))
EOF
  )
  if [ -n "${FUZZ_SCHEMA:-}" ]; then
    schema_args=("$(cd "$(dirname "$FUZZ_SCHEMA")" && pwd)/$(basename "$FUZZ_SCHEMA")" --url "$base/")
  else
    schema_args=("$base/openapi.json")
  fi
  seed_args=()
  if [ -n "${FUZZ_SEED:-}" ]; then seed_args=(--seed "$FUZZ_SEED"); fi

  echo "tests/schemathesis: $(python3 -m schemathesis.cli --version) on $backend, against $base" \
    "(${schema_args[0]}, $max_examples cases per operation, at most ${time_limit}s)"
  started=$(date +%s)
  status=0
  (
    cd "$dir"
    FUZZ_CLIENTS=$clients FUZZ_AUDIENCES=$audiences FUZZ_COUNT_FILE="$dir/requests" \
    SCHEMATHESIS_HOOKS="$here/hooks.py" \
      timeout "$time_limit" python3 -m schemathesis.cli run "${schema_args[@]}" \
        --checks not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance \
        --phases examples,coverage,fuzzing \
        --max-examples "$max_examples" \
        --workers 2 \
        --request-timeout 5 \
        --max-redirects 0 \
        --generation-database none \
        --continue-on-failure \
        --no-color \
        --report junit --report-dir "${FUZZ_REPORT_DIR:-$dir/report}/$backend" \
        "${seed_args[@]}" "$@"
  ) || status=$?
  elapsed=$(( $(date +%s) - started ))
  stop_tessera
  drop_database
  requests=$(cat "$dir/requests" 2>/dev/null || echo 0)
  total=$(( total + requests ))
  echo "tests/schemathesis: $backend: $requests requests in ${elapsed}s"

  if [ "$status" -eq 124 ]; then
    problems+=("$backend: schemathesis did not finish within ${time_limit}s")
  elif [ "$status" -ne 0 ]; then
    problems+=("$backend: schemathesis found failures (exit $status; see above)")
  fi
  if grep -q -E 'panicked|internal error' "$dir/tessera.log"; then
    grep -E 'panicked|internal error' "$dir/tessera.log" | head -20 >&2
    problems+=("$backend: the server logged internal errors (above)")
  fi
  if [ "$requests" -lt "$min_requests" ]; then
    problems+=("$backend: only $requests requests were made; at least $min_requests are required")
  fi
done

echo "tests/schemathesis: $total requests in total ($backends)"
if [ "${#problems[@]}" -gt 0 ]; then
  for p in "${problems[@]}"; do echo "tests/schemathesis: FAILED: $p" >&2; done
  exit 1
fi
echo "tests/schemathesis: passed"
