#!/usr/bin/env bash
# Install the benchmark anchors (run once, as root on Debian):
#   - wrk                (Debian package, via apt-get)
#   - supergateway 4.0.0 (npm, into bench/anchors/node_modules; pinned in bench/anchors/package.json)
#   - mcp-proxy          (PyPI, pinned below, into the venv bench/.venv)
# Node-based servers are *run* with the pinned Node 22 from tests/peers (see bench/run.sh);
# tests/peers itself is installed by the test suite's own setup (npm ci --prefix tests/peers).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
MCP_PROXY_VERSION=0.13.0
SUPERGATEWAY_VERSION=4.0.0

say() { printf '\n== %s\n' "$*"; }

if command -v wrk >/dev/null 2>&1; then
  say "wrk already installed: $(command -v wrk)"
else
  say "installing wrk (apt-get)"
  if [ "$(id -u)" -ne 0 ]; then echo "setup.sh: apt-get needs root (or install wrk yourself)" >&2; exit 1; fi
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends wrk
fi

say "installing supergateway ${SUPERGATEWAY_VERSION} (npm) into bench/anchors/node_modules"
command -v npm >/dev/null 2>&1 || { echo "setup.sh: npm not found" >&2; exit 1; }
npm install --prefix "$here/anchors" --no-audit --no-fund --save-exact "supergateway@${SUPERGATEWAY_VERSION}"
installed=$(sed -n 's/.*"version": *"\([^"]*\)".*/\1/p' "$here/anchors/node_modules/supergateway/package.json" | head -1)
[ "$installed" = "$SUPERGATEWAY_VERSION" ] || { echo "setup.sh: expected supergateway $SUPERGATEWAY_VERSION, got $installed" >&2; exit 1; }

say "installing mcp-proxy ${MCP_PROXY_VERSION} (pip) into bench/.venv"
PY=${PYTHON:-python3}
[ -x "$here/.venv/bin/python" ] || "$PY" -m venv "$here/.venv"
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet "mcp-proxy==${MCP_PROXY_VERSION}"
"$here/.venv/bin/mcp-proxy" --help >/dev/null

say "done. Now: cargo build --release --workspace --bins && bench/run.sh"
