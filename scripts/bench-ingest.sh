#!/usr/bin/env bash
# Benchmark webhook ingest end to end over loopback.
#
# Builds trainhook and ingestbench into a temporary directory, then RUNS times:
# starts `trainhook serve` on 127.0.0.1 with a fresh SQLite file and a fixed
# test signing key, waits for GET /readyz to answer 200, runs ingestbench
# against it (with --pid, for the server's peak RSS and CPU), and stops the
# server. Prints each run's figures and the medians. Exits 1 if any run failed
# (a delivery refused, a model not Ready with its output, or a time bound hit).
#
# Usage: scripts/bench-ingest.sh [extra ingestbench flags]
#
# Environment (defaults in brackets):
#   RUNS [3]  N [20000]  CONCURRENCY [32]  PAYLOAD_BYTES [4096]
#   DURATION_MAX [5m]    bound on each ingestbench run (it stops itself then)
#   READY_TIMEOUT [30]   seconds to wait for the server's /readyz
#   TRAINHOOK_BIN        use this trainhook binary instead of building one
#   KEEP_TMP=1           keep the temporary directory (databases, server logs)
#
# Worst case it takes about RUNS x (READY_TIMEOUT + DURATION_MAX + 45s) plus
# the build. The server gets a clean environment: nothing from yours (no
# APP_URL, no REPLICATE_API_TOKEN) reaches it, and it is pointed at a dead
# local Replicate URL, so a bench run never talks to Replicate.
set -euo pipefail

RUNS=${RUNS:-3}
N=${N:-20000}
CONCURRENCY=${CONCURRENCY:-32}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-4096}
DURATION_MAX=${DURATION_MAX:-5m}
READY_TIMEOUT=${READY_TIMEOUT:-30}

# A fixed test key: whsec_ + base64("trainhook-bench-secret24"), 24 bytes like Replicate's.
SECRET=whsec_dHJhaW5ob29rLWJlbmNoLXNlY3JldDI0

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-ingest.XXXXXX")
server_pid=

stop_server() {
	[[ -n $server_pid ]] || return 0
	if kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 100); do # 10 s to shut down cleanly
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$server_pid" 2>/dev/null; then
			echo "bench-ingest: server $server_pid did not stop in 10s; killing it" >&2
			kill -KILL "$server_pid" 2>/dev/null || true
		fi
	fi
	wait "$server_pid" 2>/dev/null || true
	server_pid=
}

cleanup() {
	stop_server
	if [[ ${KEEP_TMP:-} == 1 ]]; then
		echo "bench-ingest: kept $tmp" >&2
	else
		rm -rf "$tmp"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# http_status PORT PATH prints the HTTP status of GET http://127.0.0.1:PORT/PATH, or 000.
http_status() {
	if command -v curl >/dev/null; then
		curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1$2" || echo 000
		return
	fi
	local line=
	if exec 3<>"/dev/tcp/127.0.0.1/$1" 2>/dev/null; then
		printf 'GET %s HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' "$2" >&3
		read -r -t 2 line <&3 || true
		exec 3>&-
	fi
	line=${line#HTTP/* }
	echo "${line:0:3}" | grep -E '^[0-9]{3}$' || echo 000
}

# free_port prints a port nothing on 127.0.0.1 listens on.
free_port() {
	local port
	for _ in $(seq 50); do
		port=$((20000 + RANDOM % 40000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	echo "bench-ingest: no free port found" >&2
	return 1
}

# field FILE KEY prints the first value of "KEY" in ingestbench's one-line JSON.
field() {
	grep -o "\"$2\":[^,}]*" "$1" | head -n 1 | cut -d: -f2- | tr -d '"'
}

echo "bench-ingest: building into $tmp" >&2
cd "$root"
if [[ -n ${TRAINHOOK_BIN:-} ]]; then
	trainhook=$TRAINHOOK_BIN
else
	trainhook=$tmp/trainhook
	go build -o "$trainhook" ./cmd/trainhook
fi
go build -o "$tmp/ingestbench" ./internal/cmd/ingestbench

# dur_seconds DURATION prints a Go duration such as 5m, 90s or 1m30s in whole
# seconds (3600 for forms it does not read).
dur_seconds() {
	local s=$1 total=0
	while [[ $s =~ ^([0-9]+)([hms])(.*)$ ]]; do
		case ${BASH_REMATCH[2]} in
		h) total=$((total + BASH_REMATCH[1] * 3600)) ;;
		m) total=$((total + BASH_REMATCH[1] * 60)) ;;
		s) total=$((total + BASH_REMATCH[1])) ;;
		esac
		s=${BASH_REMATCH[3]}
	done
	if [[ -z $s ]]; then echo "$total"; else echo 3600; fi
}

# A bound on each ingestbench process on top of its own --duration-max.
guard=()
if command -v timeout >/dev/null; then
	guard=(timeout -k 5 "$(($(dur_seconds "$DURATION_MAX") + 30))")
fi

failed=0
for run in $(seq "$RUNS"); do
	dir=$tmp/run$run
	mkdir -p "$dir"
	port=$(free_port)
	env -i PATH="$PATH" HOME="$dir" TMPDIR="$dir" \
		DATABASE_URL="$dir/bench.db" \
		ADDR="127.0.0.1:$port" \
		REPLICATE_WEBHOOK_SECRET="$SECRET" \
		TRAINHOOK_WEBHOOKS=off \
		REPLICATE_BASE_URL="http://127.0.0.1:9/v1" \
		TRAINHOOK_LOG_FORMAT=json \
		"$trainhook" serve >"$dir/server.log" 2>&1 &
	server_pid=$!

	ready=
	for _ in $(seq $((READY_TIMEOUT * 10))); do
		if ! kill -0 "$server_pid" 2>/dev/null; then
			echo "bench-ingest: run $run: trainhook serve exited before it was ready; its log:" >&2
			tail -n 30 "$dir/server.log" >&2
			exit 1
		fi
		if [[ $(http_status "$port" /readyz) == 200 ]]; then
			ready=1
			break
		fi
		sleep 0.1
	done
	if [[ -z $ready ]]; then
		echo "bench-ingest: run $run: GET /readyz did not answer 200 within ${READY_TIMEOUT}s; server log:" >&2
		tail -n 30 "$dir/server.log" >&2
		exit 1
	fi

	echo "bench-ingest: run $run of $RUNS: server pid $server_pid on 127.0.0.1:$port" >&2
	status=0
	"${guard[@]}" "$tmp/ingestbench" --url "http://127.0.0.1:$port" --secret "$SECRET" \
		--n "$N" --concurrency "$CONCURRENCY" --payload-bytes "$PAYLOAD_BYTES" \
		--duration-max "$DURATION_MAX" --pid "$server_pid" --json "$@" \
		>"$dir/result.json" 2>"$dir/ingestbench.log" || status=$?
	stop_server
	if [[ $status != 0 ]]; then
		failed=1
		echo "bench-ingest: run $run FAILED (exit $status):" >&2
		tail -n 30 "$dir/ingestbench.log" >&2
	fi
	[[ -s $dir/result.json ]] || echo '{}' >"$dir/result.json"
done

# One row per run, then the medians.
cols=(deliveries_per_sec p50 p90 p99 max peak_rss_bytes cpu_seconds_per_1000)
printf '\n%-7s %12s %9s %9s %9s %9s %10s %11s %7s\n' run "deliveries/s" "p50 ms" "p90 ms" "p99 ms" "max ms" "RSS MiB" "CPU s/1000" passed
for run in $(seq "$RUNS"); do
	f=$tmp/run$run/result.json
	vals=()
	for c in "${cols[@]}"; do
		v=$(field "$f" "$c")
		vals+=("${v:-nan}")
	done
	printf '%-7s %12.0f %9.2f %9.2f %9.2f %9.2f %10.1f %11.3f %7s\n' "$run" \
		"${vals[0]}" "${vals[1]}" "${vals[2]}" "${vals[3]}" "${vals[4]}" \
		"$(awk -v b="${vals[5]}" 'BEGIN { printf "%.1f", b / 1048576 }')" "${vals[6]}" "$(field "$f" passed)"
done
medians=()
for c in "${cols[@]}"; do
	m=$(for run in $(seq "$RUNS"); do field "$tmp/run$run/result.json" "$c"; done |
		grep -E '^[0-9.eE+-]+$' | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
	medians+=("$m")
done
printf '%-7s %12.0f %9.2f %9.2f %9.2f %9.2f %10.1f %11.3f\n' median \
	"${medians[0]}" "${medians[1]}" "${medians[2]}" "${medians[3]}" "${medians[4]}" \
	"$(awk -v b="${medians[5]}" 'BEGIN { printf "%.1f", b / 1048576 }')" "${medians[6]}"
echo "(N=$N deliveries of ~$PAYLOAD_BYTES bytes, concurrency $CONCURRENCY, $RUNS runs, fresh SQLite database each; RSS is the server's peak VmHWM, CPU is server CPU seconds per 1000 deliveries)"

if [[ $failed != 0 ]]; then
	echo "bench-ingest: FAIL: at least one run failed" >&2
	exit 1
fi
