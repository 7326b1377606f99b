#!/usr/bin/env bash
# Runs the browser end-to-end tests: headless Chromium drives the example app (examples/rwa),
# Lock, auth0-js and Tessera's hosted pages against a real Tessera and a real SMTP server.
#
# It needs, already built:
#   target/debug/tessera           cargo build -p tessera            (or set TESSERA_BIN)
#   target/debug/tessera-example   cargo build -p tessera-example    (or set TESSERA_EXAMPLE_BIN)
# and Chromium at /usr/bin/chromium (apt-get install chromium), Node 20 or later, and Python's
# aiosmtpd (pip install -r tests/sdk/requirements.txt). It installs the npm packages itself.
#
# Usage: bash tests/browser/run.sh [test files…]   (default: every tests/browser/*.test.mjs)
# Logs, screenshots and the mail of each run go to tests/browser/artifacts/<run>/.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cd "$repo"

fail() { echo "tests/browser: $*" >&2; exit 1; }

command -v node >/dev/null || fail "node is not installed (Node 20 or later is needed)"
node_major=$(node -p 'process.versions.node.split(".")[0]')
[ "$node_major" -ge 20 ] || fail "Node $(node --version) is too old: 20 or later is needed"

chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || fail "no Chromium at $chromium: install it (apt-get install chromium). These tests are never skipped."

python3 -c 'import aiosmtpd' 2>/dev/null \
  || fail "Python's aiosmtpd is missing: python3 -m pip install -r tests/sdk/requirements.txt"

tessera_bin=${TESSERA_BIN:-$repo/target/debug/tessera}
example_bin=${TESSERA_EXAMPLE_BIN:-$repo/target/debug/tessera-example}
[ -x "$tessera_bin" ] || fail "no Tessera binary at $tessera_bin: run cargo build -p tessera"
[ -x "$example_bin" ] || fail "no example app at $example_bin: run cargo build -p tessera-example"

# npm ci when node_modules is missing or older than the lockfile (npm keeps its own copy of the
# lockfile it installed from in node_modules/.package-lock.json).
installed=$here/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ "$here/package-lock.json" -nt "$installed" ] \
  || [ ! -f "$here/node_modules/auth0-lock/build/lock.js" ]; then
  echo "tests/browser: npm ci"
  (cd "$here" && npm ci --no-audit --no-fund --loglevel=error >/dev/null) || fail "npm ci failed"
fi

export BROWSER_TEST_RUN=${BROWSER_TEST_RUN:-$(date -u +%Y%m%dT%H%M%SZ)-$$}
echo "tests/browser: artifacts in tests/browser/artifacts/$BROWSER_TEST_RUN/"

if [ "$#" -gt 0 ]; then
  files=("$@")
else
  files=("$here"/*.test.mjs)
fi
exec node --test --test-concurrency=1 --test-timeout=90000 "${files[@]}"
