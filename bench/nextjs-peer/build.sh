#!/usr/bin/env bash
# Builds the peer for a bench run in DEST (a directory this script creates or
# empties): copies the app's sources there (not a local node_modules or .next), runs
# `npm ci` and `next build`. Start it with
#   cd DEST && DATABASE_PATH=... REPLICATE_WEBHOOK_SECRET=... PEER_SYNC=full|normal \
#     node node_modules/next/dist/bin/next start -H 127.0.0.1 -p PORT
# (node itself, not npm: its pid is then the server's, for ingestbench --pid).
#
# Usage: bench/nextjs-peer/build.sh DEST
set -euo pipefail

dest=${1:?usage: bench/nextjs-peer/build.sh DEST (an empty or new directory)}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
command -v node >/dev/null && command -v npm >/dev/null ||
	{ echo "nextjs-peer: needs node and npm (Node >= 20.9)" >&2; exit 1; }
export NEXT_TELEMETRY_DISABLED=1

mkdir -p "$dest"
dest=$(cd "$dest" && pwd)
[[ $dest != "$here" ]] || { echo "nextjs-peer: DEST must not be the source directory" >&2; exit 1; }
rm -rf "${dest:?}"/* "$dest"/.next
(cd "$here" && tar -c app lib next.config.ts package.json package-lock.json tsconfig.json) | tar -x -C "$dest"
cd "$dest"
t0=$SECONDS
npm ci --no-audit --no-fund --loglevel=error >npm-ci.log 2>&1 || { tail -n 30 npm-ci.log >&2; echo "nextjs-peer: npm ci failed (log above)" >&2; exit 1; }
[[ -f node_modules/better-sqlite3/build/Release/better_sqlite3.node ]] ||
	{ echo "nextjs-peer: better-sqlite3's native module was not built (needs g++, make, python3)" >&2; exit 1; }
node node_modules/next/dist/bin/next build >next-build.log 2>&1 || { tail -n 30 next-build.log >&2; echo "nextjs-peer: next build failed (log above)" >&2; exit 1; }
echo "nextjs-peer: built in $dest in $((SECONDS - t0))s (node $(node --version), next $(node -p 'require("next/package.json").version'))" >&2
