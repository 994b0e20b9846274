#!/usr/bin/env bash
# Benchmark the ingest bench's Next.js peer alone, or side by side with
# trainhook: bench/nextjs-peer, a hand-written Next.js route handler that checks
# each delivery with the replicate client's validateWebhook and runs one
# better-sqlite3 UPDATE (see its README).
#
# Builds the peer once (bench/nextjs-peer/build.sh: npm ci + next build in a
# temporary copy) and ingestbench, then RUNS times, for each SYNC mode: starts
# `next start` (node itself, so --pid is the server's) on 127.0.0.1 with a
# fresh SQLite file, waits for GET /readyz, checks that an unsigned delivery
# is refused with 401 (which also loads the webhook route before the timed
# phase), runs ingestbench against it and stops it. With COMPARE=1 each round
# also runs `trainhook serve` on a fresh SQLite file the same way, alternating
# which goes first, and prints the per-round ratio trainhook / peer.
# Prints each run and the medians. Exits 1 if any run failed (a delivery
# refused, a model not Ready with its output, a time bound hit).
#
# Usage: scripts/bench-peer.sh [extra ingestbench flags]
#
# Environment (defaults in brackets):
#   RUNS [3]  N [5000]  CONCURRENCY [32]  PAYLOAD_BYTES [4096]  ORDER [random]
#   SYNC ["full"]        PEER_SYNC modes to run, any of: full normal
#   COMPARE [0]          1: trainhook too, alternating with the peer each round
#   DURATION_MAX [5m]    bound on each ingestbench run
#   READY_TIMEOUT [60]   seconds to wait for GET /readyz
#   PEER_DIR             an already built peer (build.sh DEST) instead of building one
#   KEEP_TMP=1           keep the temporary directory (databases, logs, JSON)
set -euo pipefail

RUNS=${RUNS:-3}
N=${N:-5000}
CONCURRENCY=${CONCURRENCY:-32}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-4096}
ORDER=${ORDER:-random}
SYNC=${SYNC:-full}
COMPARE=${COMPARE:-0}
DURATION_MAX=${DURATION_MAX:-5m}
READY_TIMEOUT=${READY_TIMEOUT:-60}

# The bench's fixed test key, as in scripts/bench-ingest.sh.
SECRET=whsec_dHJhaW5ob29rLWJlbmNoLXNlY3JldDI0

die() { echo "bench-peer: $*" >&2; exit 1; }
[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS=$RUNS: want a positive number"
[[ $N =~ ^[1-9][0-9]*$ ]] || die "N=$N: want a positive number"
[[ $CONCURRENCY =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY=$CONCURRENCY: want a positive number"
[[ -n ${SYNC// /} ]] || die "SYNC is empty: want full, normal or \"full normal\""
for s in $SYNC; do [[ $s == full || $s == normal ]] || die "SYNC=\"$SYNC\": \"$s\" is not full or normal"; done
[[ $COMPARE == 0 || $COMPARE == 1 ]] || die "COMPARE=$COMPARE: want 0 or 1"
command -v curl >/dev/null || die "needs curl"
command -v node >/dev/null || die "needs node (Node >= 20.9) and npm"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-peer.XXXXXX")
server_pid=

stop_server() {
	[[ -n $server_pid ]] || return 0
	if kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 100); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$server_pid" 2>/dev/null && { echo "bench-peer: server $server_pid did not stop in 10s; killing it" >&2; kill -KILL "$server_pid" 2>/dev/null || true; }
	fi
	wait "$server_pid" 2>/dev/null || true
	server_pid=
}
cleanup() {
	stop_server
	if [[ ${KEEP_TMP:-} == 1 ]]; then echo "bench-peer: kept $tmp" >&2; else rm -rf "$tmp"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
	local port
	for _ in $(seq 50); do
		port=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	die "no free port found"
}
status_of() { curl -s -o /dev/null -m 5 -w '%{http_code}' "$@" || echo 000; }

# start KIND DIR: starts the peer (KIND full or normal) or trainhook (KIND
# trainhook) on a fresh SQLite file in DIR; sets $port and $server_pid and
# waits for GET /readyz to answer 200.
start() {
	local kind=$1 dir=$2
	mkdir -p "$dir"
	port=$(free_port)
	if [[ $kind == trainhook ]]; then
		env -i PATH="$PATH" HOME="$dir" TMPDIR="$dir" DATABASE_URL="$dir/bench.db" ADDR="127.0.0.1:$port" \
			REPLICATE_WEBHOOK_SECRET="$SECRET" TRAINHOOK_WEBHOOKS=off REPLICATE_BASE_URL="http://127.0.0.1:9/v1" \
			TRAINHOOK_LOG_FORMAT=json "$tmp/trainhook" serve >"$dir/server.log" 2>&1 &
	else
		(cd "$peer" && exec env -i PATH="$PATH" HOME="$dir" TMPDIR="$dir" NODE_ENV=production NEXT_TELEMETRY_DISABLED=1 \
			DATABASE_PATH="$dir/bench.db" REPLICATE_WEBHOOK_SECRET="$SECRET" PEER_SYNC="$kind" \
			node node_modules/next/dist/bin/next start -H 127.0.0.1 -p "$port") >"$dir/server.log" 2>&1 &
	fi
	server_pid=$!
	local limit=$((SECONDS + READY_TIMEOUT))
	until [[ $(status_of "http://127.0.0.1:$port/readyz") == 200 ]]; do
		kill -0 "$server_pid" 2>/dev/null || { tail -n 30 "$dir/server.log" >&2; die "$kind server exited before it was ready (log above)"; }
		((SECONDS < limit)) || { tail -n 30 "$dir/server.log" >&2; die "$kind: GET /readyz did not answer 200 within ${READY_TIMEOUT}s"; }
		sleep 0.1
	done
	if [[ $kind != trainhook ]]; then
		# An unsigned delivery must be refused; it also loads the route.
		local code
		code=$(status_of -X POST -H 'Content-Type: application/json' -d '{"id":"unsigned","status":"succeeded"}' "http://127.0.0.1:$port/api/webhooks/replicate/completed")
		[[ $code == 401 ]] || die "peer ($kind) answered $code to an unsigned delivery, want 401"
	fi
}

cd "$root"
go build -o "$tmp/ingestbench" ./internal/cmd/ingestbench
[[ $COMPARE == 1 ]] && go build -o "$tmp/trainhook" ./cmd/trainhook
if [[ -n ${PEER_DIR:-} ]]; then
	peer=$(cd "$PEER_DIR" && pwd)
	[[ -d $peer/.next ]] || die "PEER_DIR=$PEER_DIR has no .next: build it with bench/nextjs-peer/build.sh $PEER_DIR"
else
	echo "bench-peer: building the peer (npm ci + next build)" >&2
	peer=$tmp/peer
	bash bench/nextjs-peer/build.sh "$peer"
fi

kinds=()
[[ $COMPARE == 1 ]] && kinds+=(trainhook)
for s in $SYNC; do kinds+=("$s"); done

failed=0
for run in $(seq "$RUNS"); do
	# Alternate the order of the kinds from one round to the next.
	order=("${kinds[@]}")
	if ((run % 2 == 0)); then
		order=()
		for ((k = ${#kinds[@]} - 1; k >= 0; k--)); do order+=("${kinds[k]}"); done
	fi
	for kind in "${order[@]}"; do
		dir=$tmp/$kind-run$run
		start "$kind" "$dir"
		echo "bench-peer: run $run of $RUNS: $kind, pid $server_pid on 127.0.0.1:$port" >&2
		status=0
		timeout -k 5 900 "$tmp/ingestbench" --url "http://127.0.0.1:$port" --secret "$SECRET" \
			--n "$N" --concurrency "$CONCURRENCY" --payload-bytes "$PAYLOAD_BYTES" --order "$ORDER" \
			--duration-max "$DURATION_MAX" --pid "$server_pid" --json "$@" >"$dir/result.json" 2>"$dir/ingestbench.log" || status=$?
		stop_server
		if [[ $status != 0 ]] || ! grep -q '"passed":true' "$dir/result.json"; then
			failed=1
			echo "bench-peer: run $run, $kind FAILED (exit $status):" >&2
			tail -n 20 "$dir/ingestbench.log" >&2
		fi
		[[ -s $dir/result.json ]] || echo '{}' >"$dir/result.json"
	done
done

field() { grep -o "\"$2\":[-0-9.eE+a-z]*" "$1" 2>/dev/null | head -n 1 | cut -d: -f2; }
median() {
	grep -E '^-?[0-9.]+([eE][-+]?[0-9]+)?$' | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
label() { case $1 in trainhook) echo trainhook ;; full) echo "peer FULL" ;; normal) echo "peer NORMAL" ;; esac; }
cols=(deliveries_per_sec p50 p90 p99 max peak_rss_bytes cpu_seconds_per_1000)
printf '\n%-12s %-7s %12s %9s %9s %9s %9s %10s %11s %7s\n' server run "deliveries/s" "p50 ms" "p90 ms" "p99 ms" "max ms" "RSS MiB" "CPU s/1000" passed
for kind in "${kinds[@]}"; do
	for run in $(seq "$RUNS") median; do
		vals=()
		for c in "${cols[@]}"; do
			if [[ $run == median ]]; then
				v=$(for r in $(seq "$RUNS"); do field "$tmp/$kind-run$r/result.json" "$c"; done | median)
			else
				v=$(field "$tmp/$kind-run$run/result.json" "$c")
			fi
			vals+=("${v:-nan}")
		done
		passed=
		[[ $run != median ]] && passed=$(field "$tmp/$kind-run$run/result.json" passed)
		printf '%-12s %-7s %12.0f %9.2f %9.2f %9.2f %9.2f %10.1f %11.3f %7s\n' "$(label "$kind")" "$run" \
			"${vals[0]}" "${vals[1]}" "${vals[2]}" "${vals[3]}" "${vals[4]}" \
			"$(awk -v b="${vals[5]}" 'BEGIN { printf "%.1f", b / 1048576 }')" "${vals[6]}" "$passed"
	done
done
if [[ $COMPARE == 1 ]]; then
	for s in $SYNC; do
		per=() ratios=()
		for run in $(seq "$RUNS"); do
			a=$(field "$tmp/trainhook-run$run/result.json" deliveries_per_sec) b=$(field "$tmp/$s-run$run/result.json" deliveries_per_sec)
			r=$(awk -v a="$a" -v b="$b" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }')
			per+=("${r:-n/a}")
			[[ -n $r ]] && ratios+=("$r")
		done
		m_a=$(for r in $(seq "$RUNS"); do field "$tmp/trainhook-run$r/result.json" deliveries_per_sec; done | median)
		m_b=$(for r in $(seq "$RUNS"); do field "$tmp/$s-run$r/result.json" deliveries_per_sec; done | median)
		printf 'trainhook / %s: ratio of medians %s×; per round %s\n' "$(label "$s")" \
			"$(awk -v a="$m_a" -v b="$m_b" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "n/a" }')" "$(IFS=/; echo "${per[*]}" | sed 's#/# / #g')"
	done
fi
echo "(N=$N deliveries of ~$PAYLOAD_BYTES bytes in $ORDER order, concurrency $CONCURRENCY, $RUNS rounds, a fresh SQLite database each run; RSS is the server's peak VmHWM, CPU is server CPU seconds per 1000 deliveries)"

if [[ $failed != 0 ]]; then
	echo "bench-peer: FAIL: at least one run failed" >&2
	exit 1
fi
