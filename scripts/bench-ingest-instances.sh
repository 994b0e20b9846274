#!/usr/bin/env bash
# Webhook ingest on PostgreSQL with one or several instances, beside SQLite.
#
# Like scripts/bench-ingest.sh (read it first), but the servers use a fresh
# PostgreSQL database per run and INSTANCES servers share it; one ingestbench
# per instance sends N/INSTANCES deliveries with CONCURRENCY/INSTANCES
# requests in flight, all at once. Deliveries/s is the sum over instances,
# p50 the median of the instances' p50s, p99 the largest p99.
#
# Usage: eval "$(bash .ci/postgres.sh)"    # or any admin URL in TRAINHOOK_TEST_POSTGRES_URL
#        INSTANCES=3 scripts/bench-ingest-instances.sh
# Environment: INSTANCES [1] RUNS [3] N [30000] CONCURRENCY [32] PAYLOAD_BYTES [4096]
set -euo pipefail

INSTANCES=${INSTANCES:-1}
RUNS=${RUNS:-3}
N=${N:-30000}
CONCURRENCY=${CONCURRENCY:-32}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-4096}
SECRET=whsec_dHJhaW5ob29rLWJlbmNoLXNlY3JldDI0
ADMIN=${TRAINHOOK_TEST_POSTGRES_URL:?set TRAINHOOK_TEST_POSTGRES_URL to an admin URL: eval "\$(bash .ci/postgres.sh)"}
command -v psql >/dev/null || { echo "bench-ingest-instances: needs psql" >&2; exit 1; }

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-ingest-pg.XXXXXX")
pids=()
db=
stop_servers() {
	for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
}
cleanup() {
	stop_servers
	[[ -z $db ]] || psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
	rm -rf "$tmp"
}
trap cleanup EXIT

cd "$root"
go build -o "$tmp/trainhook" ./cmd/trainhook
go build -o "$tmp/ingestbench" ./internal/cmd/ingestbench
dburl() { # the admin URL with its database replaced
	echo "$ADMIN" | sed -E "s#^(postgres(ql)?://[^/]+)/[^?]*#\1/$1#"
}
num() { # num KEY FILE...: the numbers of "KEY" in the result files, one a line
	local key=$1
	shift
	grep -ho "\"$key\":[0-9.eE+-]*" "$@" | cut -d: -f2
}

printf '%-7s %12s %9s %9s %11s\n' run "deliveries/s" "p50 ms" "p99 ms" "CPU s/1000"
for run in $(seq "$RUNS"); do
	db=trainhook_bench_${run}_$RANDOM
	psql -q "$ADMIN" -c "CREATE DATABASE $db" >/dev/null
	ports=()
	for i in $(seq "$INSTANCES"); do
		port=$((20000 + RANDOM % 40000))
		env -i PATH="$PATH" HOME="$tmp" DATABASE_URL="$(dburl "$db")" ADDR="127.0.0.1:$port" \
			REPLICATE_WEBHOOK_SECRET="$SECRET" TRAINHOOK_WEBHOOKS=off REPLICATE_BASE_URL="http://127.0.0.1:9/v1" \
			TRAINHOOK_LOG_FORMAT=json "$tmp/trainhook" serve >"$tmp/server$i.log" 2>&1 &
		pids+=($!)
		ports+=("$port")
	done
	for port in "${ports[@]}"; do
		for _ in $(seq 300); do curl -sf -o /dev/null "http://127.0.0.1:$port/readyz" && break; sleep 0.1; done
	done
	rm -f "$tmp"/result*.json
	bench=()
	for i in $(seq "$INSTANCES"); do
		timeout 600 "$tmp/ingestbench" --url "http://127.0.0.1:${ports[$((i - 1))]}" --secret "$SECRET" \
			--n $((N / INSTANCES)) --concurrency $((CONCURRENCY / INSTANCES)) --payload-bytes "$PAYLOAD_BYTES" \
			--pid "${pids[$((i - 1))]}" --json >"$tmp/result$i.json" 2>"$tmp/bench$i.log" &
		bench+=($!)
	done
	for b in "${bench[@]}"; do
		wait "$b" || { echo "run $run: an ingestbench failed:" >&2; tail "$tmp"/bench*.log >&2; exit 1; }
	done
	rate=$(num deliveries_per_sec "$tmp"/result*.json | awk '{ s += $1 } END { print s }')
	p50=$(num p50 "$tmp"/result*.json | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')
	p99=$(num p99 "$tmp"/result*.json | sort -g | tail -n 1)
	cpu=$(num cpu_seconds_per_1000 "$tmp"/result*.json | awk '{ s += $1 } END { print s / NR }')
	printf '%-7s %12.0f %9.2f %9.2f %11.3f\n' "$run" "$rate" "$p50" "$p99" "$cpu"
	stop_servers
	psql -q "$ADMIN" -c "DROP DATABASE $db WITH (FORCE)" >/dev/null
	db=
done
echo "(PostgreSQL, $INSTANCES instance(s) on one database, N=$N deliveries of ~$PAYLOAD_BYTES bytes, concurrency $CONCURRENCY in all)"
