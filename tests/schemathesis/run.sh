#!/usr/bin/env bash
# Fuzzes Tessera's public API with schemathesis, from the OpenAPI document the server itself
# serves at /openapi.json, against the real debug binary in dev mode on a loopback port.
#
# Checks on every response: no 5xx (not_a_server_error), the status code is one the document
# lists (status_code_conformance), the body matches the document's schema
# (response_schema_conformance) and so does its content type (content_type_conformance).
# It fails when any check fails, and when fewer than FUZZ_MIN_REQUESTS (1,000) requests were
# made in total. The run is bounded by count and by time: FUZZ_MAX_EXAMPLES generated cases per
# operation (default 150; about 4,000 requests in all, a minute or two on 2 cores), at most 5 s
# per request, and FUZZ_TIMEOUT seconds for the whole run (default 300), past which it fails.
#
# Needs: target/debug/tessera (cargo build -p tessera, or set TESSERA_BIN) and schemathesis
# (python3 -m pip install -r tests/sdk/requirements.txt).
# Reproduce a run: FUZZ_SEED=<the seed it printed> bash tests/schemathesis/run.sh
# Arguments are passed on to `schemathesis run` (e.g. --report har); FUZZ_REPORT_DIR keeps the
# reports (by default they go with the temporary folder).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

fail() { echo "tests/schemathesis: $*" >&2; exit 1; }

tessera_bin=${TESSERA_BIN:-$repo/target/debug/tessera}
[ -x "$tessera_bin" ] || fail "no Tessera binary at $tessera_bin: run cargo build -p tessera"
python3 -c 'import schemathesis' 2>/dev/null \
  || fail "schemathesis is missing: python3 -m pip install -r tests/sdk/requirements.txt"

min_requests=${FUZZ_MIN_REQUESTS:-1000}
max_examples=${FUZZ_MAX_EXAMPLES:-150}
time_limit=${FUZZ_TIMEOUT:-300}

work=$(mktemp -d)
tessera_pid=
cleanup() {
  # Only the process this script started, by its id.
  if [ -n "$tessera_pid" ] && kill -0 "$tessera_pid" 2>/dev/null; then
    kill "$tessera_pid" 2>/dev/null || true
    wait "$tessera_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"

# Rate limits and lockouts off: every request should reach the handlers' checks, not a 429.
# An SMS connection (texts go to the dev mailbox), an API, a public browser application that
# uses both connections, and a back end with Management scopes (the client_credentials grant),
# beside dev mode's demo application; the two sign with ES256 and EdDSA, the demo with RS256.
cat >"$work/tessera.toml" <<EOF
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
client_secret = "fuzz-m2m-secret-0123456789abcdef0123456789"
app_type = "regular_web"
callbacks = ["https://m2m.fuzz.test/callback"]
allowed_logout_urls = ["https://m2m.fuzz.test/"]
management_scopes = ["read:users", "read:clients"]
signing_alg = "EdDSA"
EOF

# Tessera reads every TESSERA_* variable as a configuration key (and stops on an unknown one),
# so none of the caller's (TESSERA_BIN, say) may reach it.
(
  for v in $(compgen -e | grep '^TESSERA_' || true); do unset "$v"; done
  exec "$tessera_bin" dev --config "$work/tessera.toml" --listen "127.0.0.1:$port" \
    --data-dir "$work/data"
) >"$work/tessera.log" 2>&1 &
tessera_pid=$!

for _ in $(seq 1 300); do
  if python3 -c "import urllib.request, sys; urllib.request.urlopen('$base/health', timeout=1)" 2>/dev/null; then
    break
  fi
  kill -0 "$tessera_pid" 2>/dev/null || { cat "$work/tessera.log" >&2; fail "tessera exited"; }
  sleep 0.1
done
python3 -c "import urllib.request; urllib.request.urlopen('$base/health', timeout=1)" 2>/dev/null \
  || { cat "$work/tessera.log" >&2; fail "tessera did not answer /health in 30 s"; }

# The demo application dev mode made in the data folder, and the two configured above.
clients=$(python3 - "$work/data/dev-app.json" <<'EOF'
import json, sys
demo = json.load(open(sys.argv[1]))
print(json.dumps([
    {"client_id": demo["client_id"], "client_secret": demo["client_secret"],
     "callback": demo["callback"], "logout": "http://localhost:5000/"},
    {"client_id": "fuzz-spa", "client_secret": None,
     "callback": "https://spa.fuzz.test/callback", "logout": "https://spa.fuzz.test/"},
    {"client_id": "fuzz-m2m", "client_secret": "fuzz-m2m-secret-0123456789abcdef0123456789",
     "callback": "https://m2m.fuzz.test/callback", "logout": "https://m2m.fuzz.test/",
     "scopes": ["read:users", "read:clients"]},
]))
EOF
)

report_dir=${FUZZ_REPORT_DIR:-$work/report}
# The document the server serves; FUZZ_SCHEMA=<file> tries an edited document without a rebuild.
if [ -n "${FUZZ_SCHEMA:-}" ]; then
  schema_args=("$(cd "$(dirname "$FUZZ_SCHEMA")" && pwd)/$(basename "$FUZZ_SCHEMA")" --url "$base/")
else
  schema_args=("$base/openapi.json")
fi
# The Management API's audience is under the issuer (dev mode names it localhost).
audiences=$(python3 - "$base" <<'EOF'
import json, sys, urllib.request
with urllib.request.urlopen(sys.argv[1] + "/.well-known/openid-configuration", timeout=5) as r:
    issuer = json.load(r)["issuer"]
print(json.dumps([issuer + "api/v2/", "https://api.fuzz.test/"]))
EOF
)

seed_args=()
if [ -n "${FUZZ_SEED:-}" ]; then seed_args=(--seed "$FUZZ_SEED"); fi

echo "tests/schemathesis: $(python3 -m schemathesis.cli --version) against $base (${schema_args[0]}, $max_examples cases per operation, at most ${time_limit}s)"
started=$(date +%s)
status=0
(
  cd "$work"
  FUZZ_CLIENTS=$clients FUZZ_COUNT_FILE="$work/requests" \
  FUZZ_AUDIENCES=$audiences \
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
      --report junit --report-dir "$report_dir" \
      "${seed_args[@]}" "$@"
) || status=$?
elapsed=$(( $(date +%s) - started ))
requests=$(cat "$work/requests" 2>/dev/null || echo 0)

echo "tests/schemathesis: $requests requests in ${elapsed}s"
problems=()
if [ "$status" -eq 124 ]; then
  problems+=("schemathesis did not finish within ${time_limit}s")
elif [ "$status" -ne 0 ]; then
  problems+=("schemathesis found failures (exit $status; see above)")
fi
if grep -q -E 'panicked|internal error' "$work/tessera.log"; then
  grep -E 'panicked|internal error' "$work/tessera.log" | head -20 >&2
  problems+=("the server logged internal errors (above)")
fi
if [ "$requests" -lt "$min_requests" ]; then
  problems+=("only $requests requests were made; at least $min_requests are required")
fi
if [ "${#problems[@]}" -gt 0 ]; then
  for p in "${problems[@]}"; do echo "tests/schemathesis: FAILED: $p" >&2; done
  exit 1
fi
echo "tests/schemathesis: passed"
