#!/usr/bin/env bash
# Runs Replicate's official JavaScript client against trainhook's simulator:
# builds trainhook, starts `trainhook fake-replicate` on a free loopback
# port, installs the pinned npm packages if needed, runs check.mjs and stops
# the simulator. Exit status is check.mjs's (0 when every check passed).
#
# Usage: conformance/replicate-js/run.sh   (from anywhere in the repo)
#        TRAINHOOK_BIN=/path/to/trainhook conformance/replicate-js/run.sh
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
sim_pid=""

cleanup() {
	if [[ -n "$sim_pid" ]] && kill -0 "$sim_pid" 2>/dev/null; then
		kill -TERM "$sim_pid" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 "$sim_pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$sim_pid" 2>/dev/null || true
	fi
	rm -rf "$work"
}
trap cleanup EXIT

# TRAINHOOK_BIN names an already built trainhook; otherwise build one.
bin="${TRAINHOOK_BIN:-}"
if [[ -z "$bin" ]]; then
	echo "conformance: building trainhook"
	(cd "$root" && go build -o "$work/trainhook" ./cmd/trainhook)
	bin="$work/trainhook"
fi

token="r8_conformance_$$"
"$bin" fake-replicate \
	--addr 127.0.0.1:0 \
	--token "$token" \
	--seed 1 \
	--duration 4s \
	--fail-rate 0 \
	--webhook-retry-window 8s \
	--log-level warn \
	>"$work/sim.out" 2>"$work/sim.err" &
sim_pid=$!

base=""
for _ in $(seq 100); do
	base="$(sed -n 's/^REPLICATE_BASE_URL=//p' "$work/sim.out")"
	[[ -n "$base" ]] && break
	if ! kill -0 "$sim_pid" 2>/dev/null; then
		echo "conformance: the simulator exited:" >&2
		cat "$work/sim.err" >&2
		exit 1
	fi
	sleep 0.1
done
if [[ -z "$base" ]]; then
	echo "conformance: the simulator did not start" >&2
	cat "$work/sim.err" >&2
	exit 1
fi
until curl -fsS -o /dev/null -H "Authorization: Bearer $token" "$base/v1/account"; do
	kill -0 "$sim_pid" 2>/dev/null || { cat "$work/sim.err" >&2; exit 1; }
	sleep 0.1
done
echo "conformance: simulator at $base"

cd "$here"
if [[ ! -d node_modules/replicate ]]; then
	npm ci --no-audit --no-fund --loglevel=error
fi

status=0
REPLICATE_API_TOKEN="$token" node check.mjs "$base" || status=$?
if [[ $status -ne 0 ]]; then
	echo "conformance: simulator log:" >&2
	cat "$work/sim.err" >&2
fi
exit $status
