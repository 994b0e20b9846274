#!/usr/bin/env bash
# Runs a trainhook binary through its demo and checks the sample training
# reaches Ready: the check CI runs on a release binary.
#
#   scripts/demo-smoke.sh BINARY [TIMEOUT_SECONDS]
#
# RUN_WITH runs the binary through an emulator, for a binary of another
# architecture: RUN_WITH=qemu-aarch64 scripts/demo-smoke.sh dist/..._linux_arm64
set -euo pipefail
bin=${1:?usage: demo-smoke.sh BINARY [TIMEOUT_SECONDS]}
limit=${2:-90}
data=$(mktemp -d)
trap 'rm -rf "$data"' EXIT

run=()
[ -n "${RUN_WITH:-}" ] && run=("$RUN_WITH")
"${run[@]}" "$bin" version
# The demo serves until interrupted: stop it once the sample training is
# Ready, or at the time limit.
"${run[@]}" "$bin" demo --addr 127.0.0.1:0 --duration 3s --data "$data" >"$data/out" 2>&1 &
pid=$!
for _ in $(seq "$((limit * 2))"); do
  grep -q '\] Ready: new version' "$data/out" && break
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.5
done
kill -TERM "$pid" 2>/dev/null || true
wait "$pid" || true
cat "$data/out"
if ! grep -q '\] Ready: new version' "$data/out"; then
  echo "demo-smoke: the sample training did not reach Ready within ${limit}s" >&2
  exit 1
fi
echo "demo-smoke: ok"
