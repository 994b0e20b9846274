#!/usr/bin/env bash
# Regenerate the whole performance report in one run, on this machine, and
# write it as markdown to paste into BENCHMARKS.md.
#
# Usage: scripts/bench-report.sh [OUTPUT.md]          # about an hour on 2 cores
#        QUICK=1 scripts/bench-report.sh              # small N, one run: 3 minutes
#
# What it measures, RUNS times each, interleaved so that drift on a shared
# machine hits every figure alike (medians in the report, every run beside):
#   1. Webhook ingest: `trainhook serve` on a fresh SQLite file and on a fresh
#      PostgreSQL database (one instance), internal/cmd/ingestbench sending INGEST_N
#      signed ~4 KB `succeeded` deliveries at each of INGEST_CONCURRENCY:
#      deliveries/s, p50/p99, the server's peak RSS and CPU per delivery;
#      the same on both with the deliveries in random order.
#   1a. The Next.js peer (bench/nextjs-peer, built once with `npm ci` and
#      `next build`): a hand-written App Router route handler checking each
#      delivery with the replicate client's validateWebhook and running one
#      better-sqlite3 UPDATE, in WAL mode with synchronous=FULL (durable, like
#      trainhook) and NORMAL (not durable), run by `node .../next start` (so
#      --pid is the server), the same ingestbench in random order at each of
#      INGEST_CONCURRENCY, right after trainhook's random-order runs in each
#      round. The target "≥ 8× the durable Next.js handler's rate" is the ratio
#      of the medians, each round's ratio beside. PEER=0 leaves it out (the
#      default when node or npm is missing).
#   1b. Notifications: ingest on SQLite at NOTIFY_CONCURRENCY with
#      notifications off and on (TRAINHOOK_NOTIFY_URL at ingestbench --notify,
#      a loopback receiver answering 200), the two in one run, alternating
#      which goes first: deliveries/s of each, the cost of notifications, and
#      the lag from commit to the receiver (p50/p99). NOTIFY=0 leaves it out.
#   1b'. PostgreSQL instances: INSTANCES `trainhook serve` on one fresh
#      PostgreSQL database against one, alternated in each round, one
#      ingestbench per instance sending INSTANCES_N/K deliveries with
#      INSTANCES_CONCURRENCY/K in flight, all at once (registration order):
#      deliveries/s summed over the instances, p50 the median of theirs, p99
#      the largest. INSTANCES=0 leaves it out (and POSTGRES=0).
#   1c. Ingest vs database size: the random-order SQLite ingest (DBSIZE_N
#      deliveries at DBSIZE_CONCURRENCY, random training ids as Replicate's)
#      on a copy of a database already holding each of DBSIZE_MODELS models,
#      seeded once per size with `ingestbench seed` (seed time and size on
#      disk reported). DBSIZE=0 leaves it out.
#   2. Polling: internal/cmd/lifecyclebench (simulator and trainhook on SQLite in one
#      process) with each of LIFECYCLE_SIZES trainings in flight under a
#      LIFECYCLE_BUDGET/min API budget: API calls per training and per
#      minute, detection delay p50/p99, bounded by LIFECYCLE_MAX per run.
#   2b. Polling vs trainings in flight: lifecyclebench as in 2 with each of
#      POLL_SIZES trainings in flight at each of POLL_BUDGETS req/min (2's
#      runs are among them). POLL=0 leaves it out. Each run ends when every
#      model is final or at LIFECYCLE_MAX: 50,000 at 600/min or 3,000/min
#      take the whole 3 minutes, the others 1 to 2 minutes.
#   3. Footprint: binary size (default flags, -ldflags="-s -w"), start-up
#      to GET /readyz = 200 and idle RSS on a fresh SQLite file and on one
#      with LARGE_DB_MODELS Ready models (built once with ingestbench).
#
# PostgreSQL: the admin URL in TRAINHOOK_TEST_POSTGRES_URL, or, when that is
# unset, a throwaway server started (and stopped on exit) with
# .ci/postgres.sh. POSTGRES=0 leaves PostgreSQL out.
#
# Environment (full defaults; QUICK=1 defaults in brackets):
#   RUNS 3 [1]   INGEST_N 20000 [1000]   INGEST_CONCURRENCY "4 32"   PAYLOAD_BYTES 4096
#   LIFECYCLE_SIZES "1000 10000" ["100 1000"]   LIFECYCLE_DURATION 1m [10s]
#   LIFECYCLE_MAX 3m [50s]   LIFECYCLE_BUDGET 600   POLL_INTERVAL 5s
#   NOTIFY 1   NOTIFY_CONCURRENCY 32   PEER 1 (0 without node and npm)
#   INSTANCES 3   INSTANCES_N 12000 [1200]   INSTANCES_CONCURRENCY 33
#   DBSIZE 1   DBSIZE_MODELS "10000 100000 1000000" ["1000 10000"]
#   DBSIZE_N 20000 [1000]   DBSIZE_CONCURRENCY 32
#   POLL 1   POLL_SIZES "1000 10000 50000" ["100 1000"]   POLL_BUDGETS "600 3000"
#   LARGE_DB_MODELS 100000 [5000]   IDLE_WAIT 5 [2] (seconds after ready)
#   BENCH_REPORT  output path when no argument is given (default bench-report.md)
#   KEEP_TMP=1    keep the temporary directory (databases, logs, raw JSON)
#
# Everything runs on 127.0.0.1 and is bounded: every ingestbench run by
# INGEST_MAX, every lifecyclebench run by LIFECYCLE_MAX. Servers get a clean
# environment and a dead Replicate URL, so nothing talks to Replicate. Exits 1
# (after writing the report) if a run failed or found a wrong model state.
set -euo pipefail

QUICK=${QUICK:-0}
if [[ $QUICK == 1 ]]; then
	RUNS=${RUNS:-1}
	INGEST_N=${INGEST_N:-1000}
	LIFECYCLE_SIZES=${LIFECYCLE_SIZES:-"100 1000"}
	LIFECYCLE_DURATION=${LIFECYCLE_DURATION:-10s}
	LIFECYCLE_MAX=${LIFECYCLE_MAX:-50s}
	LARGE_DB_MODELS=${LARGE_DB_MODELS:-5000}
	IDLE_WAIT=${IDLE_WAIT:-2}
	DBSIZE_MODELS=${DBSIZE_MODELS:-"1000 10000"}
	DBSIZE_N=${DBSIZE_N:-1000}
	POLL_SIZES=${POLL_SIZES:-"100 1000"}
	INSTANCES_N=${INSTANCES_N:-1200}
fi
RUNS=${RUNS:-3}
INGEST_N=${INGEST_N:-20000}
INGEST_CONCURRENCY=${INGEST_CONCURRENCY:-"4 32"}
INGEST_MAX=${INGEST_MAX:-5m}
PAYLOAD_BYTES=${PAYLOAD_BYTES:-4096}
LIFECYCLE_SIZES=${LIFECYCLE_SIZES:-"1000 10000"}
LIFECYCLE_DURATION=${LIFECYCLE_DURATION:-1m}
LIFECYCLE_MAX=${LIFECYCLE_MAX:-3m}
LIFECYCLE_BUDGET=${LIFECYCLE_BUDGET:-600}
POLL_INTERVAL=${POLL_INTERVAL:-5s}
LARGE_DB_MODELS=${LARGE_DB_MODELS:-100000}
IDLE_WAIT=${IDLE_WAIT:-5}
POSTGRES=${POSTGRES:-1}
NOTIFY=${NOTIFY:-1}
NOTIFY_CONCURRENCY=${NOTIFY_CONCURRENCY:-32}
DBSIZE=${DBSIZE:-1}
DBSIZE_MODELS=${DBSIZE_MODELS:-"10000 100000 1000000"}
DBSIZE_N=${DBSIZE_N:-20000}
DBSIZE_CONCURRENCY=${DBSIZE_CONCURRENCY:-32}
POLL=${POLL:-1}
POLL_SIZES=${POLL_SIZES:-"1000 10000 50000"}
POLL_BUDGETS=${POLL_BUDGETS:-"600 3000"}
INSTANCES=${INSTANCES:-3}
INSTANCES_N=${INSTANCES_N:-12000}
INSTANCES_CONCURRENCY=${INSTANCES_CONCURRENCY:-33}
READY_TIMEOUT=${READY_TIMEOUT:-60}
if [[ -z ${PEER:-} ]]; then
	if command -v node >/dev/null && command -v npm >/dev/null; then
		PEER=1
	else
		PEER=0
		printf 'bench-report: %s\n' "node and npm not found: leaving out the Next.js peer (PEER=0); install Node >= 20.9 to measure it" >&2
	fi
fi
OUT=${1:-${BENCH_REPORT:-bench-report.md}}

# A fixed test key: whsec_ + base64("trainhook-bench-secret24"), as in scripts/bench-ingest.sh.
SECRET=whsec_dHJhaW5ob29rLWJlbmNoLXNlY3JldDI0
# The notifications' key: whsec_ + base64("trainhook-bench-notify24").
NOTIFY_SECRET=whsec_dHJhaW5ob29rLWJlbmNoLW5vdGlmeTI0
# extra_env: more VAR=value for the next start_server (notifications on).
extra_env=()

log() { printf 'bench-report: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "RUNS=$RUNS: want a positive number"
# check_list NAME MAX EXAMPLE: every word of $NAME is a whole number from 1
# to MAX (none at all leaves those runs out, as INGEST_CONCURRENCY=" " does).
check_list() {
	local v list=${!1}
	for v in $list; do
		[[ $v =~ ^[1-9][0-9]*$ ]] && ((v <= $2)) || die "$1=\"$list\": \"$v\" is not a number from 1 to $2 (e.g. $1=\"$3\")"
	done
}
# check_num NAME MAX EXAMPLE: $NAME is one whole number from 1 to MAX.
check_num() {
	[[ ${!1} =~ ^[1-9][0-9]*$ ]] && ((${!1} <= $2)) || die "$1=\"${!1}\": want one number from 1 to $2 (e.g. $1=$3)"
}
[[ $DBSIZE == 1 ]] && { check_list DBSIZE_MODELS 5000000 "10000 100000"; check_num DBSIZE_N 1000000 20000; check_num DBSIZE_CONCURRENCY 1000 32; }
[[ $POLL == 1 ]] && { check_list POLL_SIZES 50000 "1000 10000"; check_list POLL_BUDGETS 3000 "600 3000"; }
check_list LIFECYCLE_SIZES 50000 "1000 10000"
[[ $INSTANCES =~ ^[0-9]+$ ]] && ((INSTANCES <= 8)) || die "INSTANCES=$INSTANCES: want a number from 2 to 8, or 0 to leave the instances out"
((INSTANCES == 1)) && die "INSTANCES=1: want a number from 2 to 8 (the runs compare that many instances with one), or 0"
if ((INSTANCES > 1)); then
	check_num INSTANCES_N 1000000 12000
	check_num INSTANCES_CONCURRENCY 1000 33
	((INSTANCES_CONCURRENCY >= INSTANCES)) || die "INSTANCES_CONCURRENCY=$INSTANCES_CONCURRENCY: want at least one request in flight per instance (INSTANCES=$INSTANCES)"
fi
check_num LIFECYCLE_BUDGET 3000 600
command -v curl >/dev/null || die "needs curl"
[[ $PEER == 0 || $PEER == 1 ]] || die "PEER=$PEER: want 1 (measure the Next.js peer) or 0"
if [[ $PEER == 1 ]]; then
	command -v node >/dev/null && command -v npm >/dev/null || die "PEER=1 needs node and npm (Node >= 20.9), or PEER=0"
fi

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
case $OUT in /*) ;; *) OUT=$PWD/$OUT ;; esac
tmp=$(mktemp -d "${TMPDIR:-/tmp}/bench-report.XXXXXX")
began=$EPOCHSECONDS
server_pid= # the one trainhook serve running, if any
inst_pids=() # the trainhook serve instances of an instances run, if any
child_pid=  # the bench process being waited for, if any
pg_db=      # the PostgreSQL database in use, if any
pg_started= # set when this script started PostgreSQL
failed=0

stop_server() {
	[[ -n $server_pid ]] || return 0
	if kill -0 "$server_pid" 2>/dev/null; then
		kill -TERM "$server_pid" 2>/dev/null || true
		for _ in $(seq 100); do
			kill -0 "$server_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -0 "$server_pid" 2>/dev/null && { log "server $server_pid did not stop in 10s; killing it"; kill -KILL "$server_pid" 2>/dev/null || true; }
	fi
	wait "$server_pid" 2>/dev/null || true
	server_pid=
}

stop_instances() {
	local p
	for p in ${inst_pids[@]+"${inst_pids[@]}"}; do kill -TERM "$p" 2>/dev/null || true; done
	for p in ${inst_pids[@]+"${inst_pids[@]}"}; do wait "$p" 2>/dev/null || true; done
	inst_pids=()
}

drop_db() {
	[[ -n $pg_db ]] || return 0
	psql -q "$ADMIN" -c "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true
	pg_db=
}

cleanup() {
	local code=$?
	trap - EXIT INT TERM
	if [[ -n $child_pid ]]; then
		kill -TERM "$child_pid" 2>/dev/null || true
		wait "$child_pid" 2>/dev/null || true
	fi
	stop_server
	stop_instances
	drop_db
	if [[ -n $pg_started ]]; then
		bash "$root/.ci/postgres.sh" stop "$TRAINHOOK_TEST_POSTGRES_DIR" || true
	fi
	if [[ ${KEEP_TMP:-} == 1 ]]; then log "kept $tmp"; else rm -rf "$tmp"; fi
	exit "$code"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# run_bg CMD...: runs CMD in the background and waits for it, so a signal to
# this script is handled at once (the trap stops CMD) rather than after it.
run_bg() {
	"$@" &
	child_pid=$!
	local status=0
	wait "$child_pid" || status=$?
	child_pid=
	return "$status"
}

# A sleep without forking, for the start-up timing loop.
mkfifo "$tmp/tick"
exec {tick}<>"$tmp/tick"
nap() { read -r -t "$1" -u "$tick" _ || true; }

# ready PORT: whether GET /readyz on 127.0.0.1:PORT answers 200 (no fork).
ready() {
	local fd line=
	{ exec {fd}<>"/dev/tcp/127.0.0.1/$1"; } 2>/dev/null || return 1
	printf 'GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' >&"$fd"
	read -r -t 2 -u "$fd" line || true
	exec {fd}>&-
	[[ $line == "HTTP/"*" 200"* ]]
}

# free_port prints a port nothing on 127.0.0.1 listens on, below the
# kernel's ephemeral range where it can, so that no client connection of a
# bench holds it as its local port.
free_port() {
	local low port span=40000
	low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || echo 0)
	((low > 21000)) && span=$((low - 20000))
	for _ in $(seq 50); do
		port=$((20000 + RANDOM % span))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
			echo "$port"
			return
		fi
	done
	die "no free port found"
}

# launch DATABASE_URL PORT LOG: starts `trainhook serve` in the background ($!)
# in a clean environment with a dead Replicate URL, plus extra_env.
launch() {
	env -i PATH="$PATH" HOME="$tmp" TMPDIR="$tmp" DATABASE_URL="$1" ADDR="127.0.0.1:$2" \
		REPLICATE_WEBHOOK_SECRET="$SECRET" TRAINHOOK_WEBHOOKS=off REPLICATE_BASE_URL="http://127.0.0.1:9/v1" \
		TRAINHOOK_LOG_FORMAT=json ${extra_env[@]+"${extra_env[@]}"} "$tmp/trainhook" serve >"$3" 2>&1 &
}

# start_server DATABASE_URL LOG: starts `trainhook serve` on a free port in
# a clean environment (port in $port, pid in $server_pid); waits until
# GET /readyz answers 200 and sets $startup_ms to the time that took from
# just before the fork. A port taken between the check and the bind is
# retried with another.
start_server() {
	local attempt t0 t1 limit
	for attempt in 1 2 3 4 5; do
		port=$(free_port)
		t0=$EPOCHREALTIME
		launch "$1" "$port" "$2"
		server_pid=$!
		limit=$((EPOCHSECONDS + READY_TIMEOUT))
		until ready "$port"; do
			if ! kill -0 "$server_pid" 2>/dev/null; then
				wait "$server_pid" 2>/dev/null || true
				server_pid=
				if ((attempt < 5)) && grep -q 'address already in use' "$2"; then
					log "port $port was taken; trying another"
					continue 2
				fi
				tail -n 20 "$2" >&2
				die "trainhook serve exited before it was ready (log above)"
			fi
			((EPOCHSECONDS < limit)) || { tail -n 20 "$2" >&2; die "GET /readyz did not answer 200 within ${READY_TIMEOUT}s"; }
			nap 0.005
		done
		t1=$EPOCHREALTIME
		startup_ms=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.0f", (b - a) * 1000 }')
		return
	done
}

# start_instances K DATABASE_URL LOGPREFIX: starts K `trainhook serve` on one
# database, as start_server does one (pids in inst_pids, ports in
# inst_ports), and waits until each answers GET /readyz with 200.
start_instances() {
	local i p limit
	inst_ports=()
	for ((i = 1; i <= $1; i++)); do
		p=$(free_port)
		launch "$2" "$p" "$3-$i.server.log"
		inst_pids+=($!)
		inst_ports+=("$p")
	done
	limit=$((EPOCHSECONDS + READY_TIMEOUT))
	for ((i = 0; i < $1; i++)); do
		until ready "${inst_ports[$i]}"; do
			kill -0 "${inst_pids[$i]}" 2>/dev/null || { tail -n 20 "$3-$((i + 1)).server.log" >&2; die "instance $((i + 1)) exited before it was ready (log above)"; }
			((EPOCHSECONDS < limit)) || { tail -n 20 "$3-$((i + 1)).server.log" >&2; die "instance $((i + 1)): GET /readyz did not answer 200 within ${READY_TIMEOUT}s"; }
			nap 0.05
		done
	done
}

# start_peer SYNC DATABASE LOG: starts the Next.js peer (PEER_SYNC=SYNC) on a
# free port, as start_server does trainhook: node itself runs `next start`, so
# $server_pid is the server. Once GET /readyz answers 200, an unsigned delivery
# must be refused with 401; that also loads the webhook route, as trainhook's
# is loaded before its first request.
start_peer() {
	local limit code
	port=$(free_port)
	(cd "$tmp/peer" && exec env -i PATH="$PATH" HOME="$tmp" TMPDIR="$tmp" NODE_ENV=production NEXT_TELEMETRY_DISABLED=1 \
		DATABASE_PATH="$2" REPLICATE_WEBHOOK_SECRET="$SECRET" PEER_SYNC="$1" \
		node node_modules/next/dist/bin/next start -H 127.0.0.1 -p "$port") >"$3" 2>&1 &
	server_pid=$!
	limit=$((EPOCHSECONDS + READY_TIMEOUT))
	until ready "$port"; do
		if ! kill -0 "$server_pid" 2>/dev/null; then
			wait "$server_pid" 2>/dev/null || true
			server_pid=
			tail -n 20 "$3" >&2
			die "the Next.js peer exited before it was ready (log above)"
		fi
		((EPOCHSECONDS < limit)) || { tail -n 20 "$3" >&2; die "the Next.js peer: GET /readyz did not answer 200 within ${READY_TIMEOUT}s"; }
		nap 0.05
	done
	code=$(curl -s -o /dev/null -m 10 -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
		-d '{"id":"unsigned","status":"succeeded"}' "http://127.0.0.1:$port/api/webhooks/replicate/completed" || true)
	[[ $code == 401 ]] || die "the Next.js peer answered ${code:-nothing} to an unsigned delivery, want 401"
}

# dur_seconds DURATION: a Go duration such as 8m, 50s or 1m30s in whole seconds.
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
	[[ -z $s ]] || die "$1: want a duration such as 8m, 50s or 1m30s"
	echo "$total"
}

lifecycle_max_s=$(dur_seconds "$LIFECYCLE_MAX") || exit 1
dur_seconds "$LIFECYCLE_DURATION" >/dev/null || exit 1

# vmrss PID: resident set size in bytes.
vmrss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }

# num FILE KEY: the first number of "KEY" in a one-line JSON result.
num() { grep -o "\"$2\":[-0-9.eE+]*" "$1" 2>/dev/null | head -n 1 | cut -d: -f2; }
# flag FILE KEY: whether "KEY":true is in a JSON result.
flag() { grep -q "\"$2\":true" "$1" 2>/dev/null; }
# vals DIR GLOB KEY: KEY of every result file matching GLOB, one a line.
vals() {
	local f
	for f in "$1"/$2; do [[ -s $f ]] && num "$f" "$3"; done
	return 0
}

# median: the median of the numbers on stdin ("" if none).
median() {
	grep -E '^-?[0-9.]+([eE][-+]?[0-9]+)?$' | sort -g |
		awk '{ v[NR] = $1 } END { if (NR == 0) print ""; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
# fmt_int N: 12,345 (rounded).
fmt_int() {
	[[ -n $1 ]] || { echo "n/a"; return; }
	awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o }'
}
# fmt FORMAT N: printf, or n/a for nothing.
fmt() { if [[ -n $2 ]]; then awk -v f="$1" -v n="$2" 'BEGIN { printf f, n }'; else echo "n/a"; fi; }
mib() { if [[ -n $1 ]]; then awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; else echo "n/a"; fi; }

# The commands the report lists, each once, in the order first run.
commands=()
note_command() {
	local c
	for c in "${commands[@]}"; do [[ $c == "$1" ]] && return; done
	commands+=("$1")
}

cd "$root"
log "writing $OUT; temporary files in $tmp"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# --- Build -------------------------------------------------------------------
log "building"
go build -o "$tmp/trainhook" ./cmd/trainhook
go build -ldflags="-s -w" -o "$tmp/trainhook-stripped" ./cmd/trainhook
go build -o "$tmp/ingestbench" ./internal/cmd/ingestbench
go build -o "$tmp/lifecyclebench" ./internal/cmd/lifecyclebench
peers=()
if [[ $PEER == 1 ]]; then
	log "building the Next.js peer (npm ci + next build)"
	bash bench/nextjs-peer/build.sh "$tmp/peer" || die "could not build the Next.js peer (bench/nextjs-peer/build.sh)"
	note_command 'bench/nextjs-peer/build.sh DIR  # once: npm ci + next build in a copy'
	peers=(peer-full peer-normal)
fi
note_command 'go build -o trainhook ./cmd/trainhook; go build -ldflags="-s -w" -o trainhook-stripped ./cmd/trainhook'
size_default=$(stat -c %s "$tmp/trainhook")
size_stripped=$(stat -c %s "$tmp/trainhook-stripped")

# --- PostgreSQL --------------------------------------------------------------
dbs=(sqlite)
pg_version=
if [[ $POSTGRES == 1 ]]; then
	command -v psql >/dev/null || die "needs psql for PostgreSQL (or POSTGRES=0)"
	if [[ -z ${TRAINHOOK_TEST_POSTGRES_URL:-} ]]; then
		log "starting PostgreSQL with .ci/postgres.sh"
		pg_env=$(bash .ci/postgres.sh) || die ".ci/postgres.sh could not start PostgreSQL"
		eval "$pg_env"
		pg_started=1
	fi
	ADMIN=$TRAINHOOK_TEST_POSTGRES_URL
	pg_version=$(psql -tA "$ADMIN" -c 'SHOW server_version' | awk '{ print $1 }')
	dbs+=(postgres)
else
	INSTANCES=0
fi
# The ingest rows, in the order each round runs them: each database in
# registration order, then each in random order, then the Next.js peer.
kinds=("${dbs[@]}")
for db in "${dbs[@]}"; do kinds+=("$db-random"); done
kinds+=(${peers[@]+"${peers[@]}"})
# pg_url DB: the admin URL with its database replaced.
pg_url() { echo "$ADMIN" | sed -E "s#^(postgres(ql)?://[^/]+)/[^?]*#\1/$1#"; }

mkdir -p "$tmp/ingest" "$tmp/instances" "$tmp/notify" "$tmp/lifecycle" "$tmp/footprint" "$tmp/dbsize"
ingest_cmd='ingestbench --url http://127.0.0.1:PORT --secret $SECRET --n %s --concurrency C --payload-bytes %s --duration-max %s --order %s --pid SERVER_PID --json'

# --- Seeded databases, once per size ---------------------------------------------
# Each measured ingest runs on a copy of its template, so every run starts
# from the same file; the copy is fsynced before the server starts, so its
# writeback does not land on the measured run's first checkpoint.
if [[ $DBSIZE == 1 ]]; then
	for m in $DBSIZE_MODELS; do
		log "seeding a database of $m models"
		note_command "ingestbench seed --db template-M.db --models M --json  # once per M in: $DBSIZE_MODELS"
		run_bg timeout -k 5 1800 "$tmp/ingestbench" seed --db "$tmp/dbsize/template-$m.db" --models "$m" --json \
			>"$tmp/dbsize/seed-$m.json" 2>"$tmp/dbsize/seed-$m.log" ||
			{ tail -n 5 "$tmp/dbsize/seed-$m.log" >&2; die "could not seed a database of $m models"; }
	done
fi

# The polling runs: LIFECYCLE_SIZES at LIFECYCLE_BUDGET, then the
# POLL_SIZES x POLL_BUDGETS not among them, as "n:budget".
poll_runs=()
add_poll_run() {
	local r
	for r in ${poll_runs[@]+"${poll_runs[@]}"}; do [[ $r == "$1" ]] && return; done
	poll_runs+=("$1")
}
for n in $LIFECYCLE_SIZES; do add_poll_run "$n:$LIFECYCLE_BUDGET"; done
if [[ $POLL == 1 ]]; then
	for b in $POLL_BUDGETS; do
		for n in $POLL_SIZES; do add_poll_run "$n:$b"; done
	done
fi

# --- The runs ----------------------------------------------------------------
for run in $(seq "$RUNS"); do
	# 1. Webhook ingest.
	for db in "${kinds[@]}"; do
		for c in $INGEST_CONCURRENCY; do
			id=$db-c$c-run$run
			order=registration
			[[ $db == *-random || $db == peer-* ]] && order=random
			if [[ $db == peer-* ]]; then
				url=$tmp/$id.db
				note_command "cd DIR && DATABASE_PATH=\$(mktemp -d)/peer.db REPLICATE_WEBHOOK_SECRET=\$SECRET PEER_SYNC=full|normal NODE_ENV=production node node_modules/next/dist/bin/next start -H 127.0.0.1 -p PORT  # the Next.js peer"
			elif [[ $db == sqlite* ]]; then
				url=$tmp/$id.db
				note_command "DATABASE_URL=\$(mktemp -d)/bench.db ADDR=127.0.0.1:PORT REPLICATE_WEBHOOK_SECRET=\$SECRET TRAINHOOK_WEBHOOKS=off REPLICATE_BASE_URL=http://127.0.0.1:9/v1 trainhook serve"
			else
				pg_db=trainhook_report_${run}_${c}_$RANDOM
				psql -q "$ADMIN" -c "CREATE DATABASE $pg_db" >/dev/null
				url=$(pg_url "$pg_db")
				note_command "psql \$ADMIN -c 'CREATE DATABASE fresh'; DATABASE_URL=postgres://.../fresh (same variables) trainhook serve"
			fi
			if [[ $db == peer-* ]]; then
				start_peer "${db#peer-}" "$url" "$tmp/ingest/$id.server.log"
			else
				start_server "$url" "$tmp/ingest/$id.server.log"
			fi
			log "run $run/$RUNS: ingest, $db, concurrency $c, N=$INGEST_N"
			# shellcheck disable=SC2059
			note_command "$(printf "$ingest_cmd" "$INGEST_N" "$PAYLOAD_BYTES" "$INGEST_MAX" "$order")  # C in: $INGEST_CONCURRENCY"
			status=0
			run_bg timeout -k 5 900 "$tmp/ingestbench" --url "http://127.0.0.1:$port" --secret "$SECRET" \
				--n "$INGEST_N" --concurrency "$c" --payload-bytes "$PAYLOAD_BYTES" --duration-max "$INGEST_MAX" \
				--order "$order" --pid "$server_pid" --json >"$tmp/ingest/$id.json" 2>"$tmp/ingest/$id.log" || status=$?
			stop_server
			drop_db
			if [[ $status != 0 ]] || ! flag "$tmp/ingest/$id.json" passed; then
				failed=1
				log "run $run: ingest $db c$c FAILED (exit $status):"
				tail -n 5 "$tmp/ingest/$id.log" >&2
			fi
		done
	done

	# 1b'. PostgreSQL: INSTANCES instances on one database against one,
	# alternating which goes first.
	if ((INSTANCES > 1)); then
		counts="1 $INSTANCES"
		((run % 2 == 0)) && counts="$INSTANCES 1"
		for k in $counts; do
			id=i$k-run$run
			pg_db=trainhook_report_i${k}_${run}_$RANDOM
			psql -q "$ADMIN" -c "CREATE DATABASE $pg_db" >/dev/null
			start_instances "$k" "$(pg_url "$pg_db")" "$tmp/instances/$id"
			log "run $run/$RUNS: ingest, PostgreSQL, $k instance(s) on one database, concurrency $INSTANCES_CONCURRENCY in all, N=$INSTANCES_N"
			note_command "psql \$ADMIN -c 'CREATE DATABASE fresh'; K x: DATABASE_URL=postgres://.../fresh ADDR=127.0.0.1:PORT_i (same variables) trainhook serve  # K in: 1 $INSTANCES"
			note_command "K x at once: ingestbench --url http://127.0.0.1:PORT_i --secret \$SECRET --n $INSTANCES_N/K --concurrency $INSTANCES_CONCURRENCY/K --payload-bytes $PAYLOAD_BYTES --duration-max $INGEST_MAX --pid SERVER_PID_i --json"
			benches=()
			for ((i = 1; i <= k; i++)); do
				timeout -k 5 900 "$tmp/ingestbench" --url "http://127.0.0.1:${inst_ports[$((i - 1))]}" --secret "$SECRET" \
					--n $((INSTANCES_N / k)) --concurrency $((INSTANCES_CONCURRENCY / k)) --payload-bytes "$PAYLOAD_BYTES" \
					--duration-max "$INGEST_MAX" --pid "${inst_pids[$((i - 1))]}" --json \
					>"$tmp/instances/$id-$i.json" 2>"$tmp/instances/$id-$i.log" &
				benches+=($!)
			done
			status=0
			for b in "${benches[@]}"; do wait "$b" || status=$?; done
			stop_instances
			drop_db
			for ((i = 1; i <= k; i++)); do
				if [[ $status != 0 ]] || ! flag "$tmp/instances/$id-$i.json" passed; then
					failed=1
					log "run $run: ingest with $k instance(s) FAILED (exit $status):"
					tail -n 5 "$tmp/instances/$id-$i.log" >&2
				fi
			done
			# One line per run: the instances' rates summed, p50 the median
			# of theirs, p99 the largest.
			{
				printf '{"deliveries_per_sec":%s,' "$(vals "$tmp/instances" "$id-*.json" deliveries_per_sec | awk '{ s += $1 } END { print s + 0 }')"
				printf '"p50":%s,' "$(vals "$tmp/instances" "$id-*.json" p50 | median)"
				printf '"p99":%s}\n' "$(vals "$tmp/instances" "$id-*.json" p99 | sort -g | tail -n 1)"
			} >"$tmp/instances/$id.sum"
		done
	fi

	# 1b. Ingest with notifications off and on, side by side.
	if [[ $NOTIFY == 1 ]]; then
		modes="off on"
		((run % 2 == 0)) && modes="on off" # alternate which goes first
		for mode in $modes; do
			id=$mode-run$run
			extra_env=()
			notify_args=()
			note_command "DATABASE_URL=\$(mktemp -d)/bench.db ADDR=127.0.0.1:PORT REPLICATE_WEBHOOK_SECRET=\$SECRET TRAINHOOK_WEBHOOKS=off REPLICATE_BASE_URL=http://127.0.0.1:9/v1 trainhook serve"
			if [[ $mode == on ]]; then
				nport=$(free_port)
				extra_env=(TRAINHOOK_NOTIFY_URL="http://127.0.0.1:$nport/" TRAINHOOK_NOTIFY_SECRET="$NOTIFY_SECRET")
				notify_args=(--notify "127.0.0.1:$nport" --notify-secret "$NOTIFY_SECRET")
				note_command "TRAINHOOK_NOTIFY_URL=http://127.0.0.1:NPORT/ TRAINHOOK_NOTIFY_SECRET=\$NOTIFY_SECRET (same variables) trainhook serve  # notifications on"
				note_command "$(printf "$ingest_cmd" "$INGEST_N" "$PAYLOAD_BYTES" "$INGEST_MAX" registration | sed "s/--concurrency C/--concurrency $NOTIFY_CONCURRENCY/") --notify 127.0.0.1:NPORT --notify-secret \$NOTIFY_SECRET  # notifications on; without --notify for off"
			fi
			start_server "$tmp/notify/$id.db" "$tmp/notify/$id.server.log"
			extra_env=()
			log "run $run/$RUNS: ingest with notifications $mode, SQLite, concurrency $NOTIFY_CONCURRENCY, N=$INGEST_N"
			status=0
			run_bg timeout -k 5 900 "$tmp/ingestbench" --url "http://127.0.0.1:$port" --secret "$SECRET" \
				--n "$INGEST_N" --concurrency "$NOTIFY_CONCURRENCY" --payload-bytes "$PAYLOAD_BYTES" --duration-max "$INGEST_MAX" \
				--pid "$server_pid" ${notify_args[@]+"${notify_args[@]}"} --json >"$tmp/notify/$id.json" 2>"$tmp/notify/$id.log" || status=$?
			stop_server
			if [[ $status != 0 ]] || ! flag "$tmp/notify/$id.json" passed; then
				failed=1
				log "run $run: ingest with notifications $mode FAILED (exit $status):"
				tail -n 5 "$tmp/notify/$id.log" >&2
			fi
		done
	fi

	# 1c. Ingest vs database size, on a fresh copy of each seeded database;
	# each run starts the sizes one further along, so that no size always
	# runs first or last.
	if [[ $DBSIZE == 1 ]]; then
		read -r -a sizes <<<"$DBSIZE_MODELS"
		for k in "${!sizes[@]}"; do
			m=${sizes[(k + run - 1) % ${#sizes[@]}]}
			id=m$m-run$run
			db=$tmp/dbsize/run.db
			cp "$tmp/dbsize/template-$m.db" "$db"
			sync "$db"
			note_command "cp template-M.db run.db; sync run.db; DATABASE_URL=run.db (same variables) trainhook serve"
			start_server "$db" "$tmp/dbsize/$id.server.log"
			log "run $run/$RUNS: ingest on a database of $m models, random order, concurrency $DBSIZE_CONCURRENCY, N=$DBSIZE_N"
			# shellcheck disable=SC2059
			note_command "$(printf "$ingest_cmd" "$DBSIZE_N" "$PAYLOAD_BYTES" "$INGEST_MAX" random | sed "s/--concurrency C/--concurrency $DBSIZE_CONCURRENCY/") --training-ids random  # on each seeded copy"
			status=0
			run_bg timeout -k 5 900 "$tmp/ingestbench" --url "http://127.0.0.1:$port" --secret "$SECRET" \
				--n "$DBSIZE_N" --concurrency "$DBSIZE_CONCURRENCY" --payload-bytes "$PAYLOAD_BYTES" --duration-max "$INGEST_MAX" \
				--order random --training-ids random --pid "$server_pid" --json >"$tmp/dbsize/$id.json" 2>"$tmp/dbsize/$id.log" || status=$?
			stop_server
			rm -f "$db" "$db-wal" "$db-shm" "$db.lock"
			if [[ $status != 0 ]] || ! flag "$tmp/dbsize/$id.json" passed; then
				failed=1
				log "run $run: ingest on $m models FAILED (exit $status):"
				tail -n 5 "$tmp/dbsize/$id.log" >&2
			fi
		done
	fi

	# 2. Polling cost and detection delay.
	for nb in "${poll_runs[@]}"; do
		n=${nb%%:*} b=${nb##*:}
		id=n$n-b$b-run$run
		log "run $run/$RUNS: polling, $n trainings in flight, budget $b/min (at most $LIFECYCLE_MAX)"
		note_command "lifecyclebench --mode polling --n N --duration $LIFECYCLE_DURATION --budget B --poll-interval $POLL_INTERVAL --max $LIFECYCLE_MAX --json  # N:B in: ${poll_runs[*]}"
		status=0
		run_bg timeout -k 5 $((lifecycle_max_s + 180)) "$tmp/lifecyclebench" --mode polling --n "$n" --duration "$LIFECYCLE_DURATION" --budget "$b" \
			--poll-interval "$POLL_INTERVAL" --max "$LIFECYCLE_MAX" --json >"$tmp/lifecycle/$id.json" 2>"$tmp/lifecycle/$id.log" || status=$?
		if [[ ! -s $tmp/lifecycle/$id.json ]]; then
			failed=1
			log "run $run: lifecyclebench --n $n --budget $b FAILED (exit $status):"
			tail -n 5 "$tmp/lifecycle/$id.log" >&2
		elif [[ $(num "$tmp/lifecycle/$id.json" wrong_or_missing_final_states) != 0 ]] || ! flag "$tmp/lifecycle/$id.json" budget_kept; then
			failed=1
			log "run $run: lifecyclebench --n $n --budget $b found wrong final states or broke the budget"
		fi
	done
done

# 3. Footprint: start-up and idle RSS, fresh file and large database.
log "building a database of $LARGE_DB_MODELS Ready models"
note_command "ingestbench --n $LARGE_DB_MODELS --concurrency 32 ...  # once, to fill the large database"
start_server "$tmp/large.db" "$tmp/footprint/large-build.server.log"
run_bg timeout -k 5 1800 "$tmp/ingestbench" --url "http://127.0.0.1:$port" --secret "$SECRET" --n "$LARGE_DB_MODELS" \
	--concurrency 32 --payload-bytes "$PAYLOAD_BYTES" --duration-max 25m --json \
	>"$tmp/footprint/large-build.json" 2>"$tmp/footprint/large-build.log" ||
	{ tail -n 5 "$tmp/footprint/large-build.log" >&2; die "could not build the large database"; }
stop_server
large_bytes=$(du -cb "$tmp"/large.db* | tail -n 1 | cut -f1)
note_command "# start-up: time from exec of trainhook serve to the first 200 from GET /readyz (polled every 5 ms); VmRSS ${IDLE_WAIT}s later"
for run in $(seq "$RUNS"); do
	for kind in empty large; do
		if [[ $kind == empty ]]; then db=$tmp/footprint/empty-$run.db; else db=$tmp/large.db; fi
		start_server "$db" "$tmp/footprint/$kind-$run.server.log"
		echo "$startup_ms" >>"$tmp/footprint/$kind.startup"
		sleep "$IDLE_WAIT"
		vmrss "$server_pid" >>"$tmp/footprint/$kind.rss"
		stop_server
	done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$((EPOCHSECONDS - began))

# --- The report ----------------------------------------------------------------
# lagvals DIR GLOB KEY: KEY (p50, p99...) of the notification lag of every
# result file matching GLOB, one a line.
lagvals() {
	local f
	for f in "$1"/$2; do
		[[ -s $f ]] && grep -o '"lag_ms":{[^}]*}' "$f" | grep -o "\"$3\":[-0-9.eE+]*" | cut -d: -f2
	done
	return 0
}
# random_target RATE P99: the random-order target, ≥ 6,000/s with p99 ≤ 15 ms.
random_target() {
	if [[ -n $1 && -n $2 ]] && awk -v r="$1" -v p="$2" 'BEGIN { exit !(r >= 6000 && p <= 15) }'; then
		echo "≥ 6,000/s, p99 ≤ 15 ms: **met**"
	else
		echo "≥ 6,000/s, p99 ≤ 15 ms: **missed**"
	fi
}
# round_ratios A B AWKFMT SCALE: each round's deliveries/s of ingest row A
# (e.g. sqlite-random) over row B's at concurrency 32, times SCALE, printed
# with AWKFMT and joined with " / ".
round_ratios() {
	local per=() k a b r
	for ((k = 1; k <= RUNS; k++)); do
		a=$(vals "$tmp/ingest" "$1-c32-run$k.json" deliveries_per_sec)
		b=$(vals "$tmp/ingest" "$2-c32-run$k.json" deliveries_per_sec)
		r=$(awk -v a="$a" -v b="$b" -v f="$3" -v s="$4" 'BEGIN { if (a > 0 && b > 0) printf f, a / b * s }')
		per+=("${r:-n/a}")
	done
	(IFS=/; echo "${per[*]}" | sed 's#/# / #g')
}
# peer_target RATE P99 short|long: trainhook's random-order rate at
# concurrency 32 against the durable Next.js peer's, the ratio of the
# medians; long adds each round's ratio.
peer_target() {
	local peer_rate ratio verdict=missed
	peer_rate=$(vals "$tmp/ingest" "peer-full-c32-run*.json" deliveries_per_sec | median)
	ratio=$(awk -v a="$1" -v b="$peer_rate" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b }')
	if [[ -n $ratio && -n $2 ]] && awk -v x="$ratio" -v p="$2" 'BEGIN { exit !(x >= 8 && p <= 15) }'; then verdict=met; fi
	if [[ $3 == short ]]; then
		echo "≥ 8× the durable Next.js handler, p99 ≤ 15 ms: ${ratio:-n/a}×, **$verdict**"
		return
	fi
	echo "≥ 8× the durable Next.js handler's rate (random order, concurrency 32) with p99 ≤ 15 ms: $(fmt_int "$1")/s against $(fmt_int "$peer_rate")/s, ${ratio:-n/a}× (ratio of the medians; per round $(round_ratios sqlite-random peer-full '%.2f×' 1)), p99 $(fmt '%.1f ms' "$2"): **$verdict**"
}
# pg_target RATE P99 short|long: one PostgreSQL instance's random-order rate
# at concurrency 32 against SQLite's in the same rounds, the ratio of the
# medians; long adds each round's ratio.
pg_target() {
	local sq_rate pct verdict=missed
	sq_rate=$(vals "$tmp/ingest" "sqlite-random-c32-run*.json" deliveries_per_sec | median)
	pct=$(awk -v a="$1" -v b="$sq_rate" 'BEGIN { if (a > 0 && b > 0) printf "%.0f", a / b * 100 }')
	if [[ -n $pct && -n $2 ]] && awk -v x="$pct" -v p="$2" 'BEGIN { exit !(x >= 50 && p <= 15) }'; then verdict=met; fi
	if [[ $3 == short ]]; then
		echo "≥ 50% of SQLite's random-order rate, p99 ≤ 15 ms: ${pct:-n/a}%, **$verdict**"
		return
	fi
	echo "≥ 50% of SQLite's random-order rate with p99 ≤ 15 ms: $(fmt_int "$1")/s against $(fmt_int "$sq_rate")/s, ${pct:-n/a}% (ratio of the medians; per round $(round_ratios postgres-random sqlite-random '%.0f%%' 100)), p99 $(fmt '%.1f ms' "$2"): **$verdict**"
}
# runs_list DIR GLOB KEY FORMAT: every run's value, joined with " / "
# (FORMAT int: 12,345).
runs_list() {
	local out=() v
	while read -r v; do
		if [[ $4 == int ]]; then out+=("$(fmt_int "$v")"); else out+=("$(fmt "$4" "$v")"); fi
	done < <(vals "$1" "$2" "$3")
	local IFS=/
	echo "${out[*]:-n/a}" | sed 's#/# / #g'
}

commit=$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)
git diff --quiet HEAD -- 2>/dev/null || commit="$commit (with uncommitted changes)"
cpu=$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)
mem=$(awk '/^MemTotal:/ { printf "%.0f GiB", $2 / 1048576 }' /proc/meminfo)
invocation="scripts/bench-report.sh"
for v in INSTANCES_CONCURRENCY INSTANCES_N INSTANCES PEER POLL_BUDGETS POLL_SIZES POLL DBSIZE_CONCURRENCY DBSIZE_N DBSIZE_MODELS DBSIZE NOTIFY_CONCURRENCY NOTIFY POSTGRES IDLE_WAIT LARGE_DB_MODELS POLL_INTERVAL LIFECYCLE_BUDGET LIFECYCLE_MAX LIFECYCLE_DURATION LIFECYCLE_SIZES PAYLOAD_BYTES INGEST_CONCURRENCY INGEST_N RUNS QUICK; do
	invocation="$v=\"${!v}\" $invocation"
done

{
	echo "## Performance report"
	echo
	echo "Generated $(date -u '+%Y-%m-%d %H:%M UTC') by \`scripts/bench-report.sh\` in $((elapsed / 60)) min $((elapsed % 60)) s,"
	echo "all figures side by side on one machine; each is the median of $RUNS run(s), the runs interleaved."
	[[ $QUICK == 1 ]] && echo "**QUICK mode: small N and $RUNS run(s); a smoke test of the script, not figures to quote.**"
	echo
	echo "| machine | |"
	echo "|---|---|"
	echo "| CPU | $(nproc) cores, ${cpu:-unknown}, $mem |"
	echo "| OS | $(uname -sr) |"
	echo "| Go | $(go version | awk '{ print $3, $4 }') |"
	echo "| commit | $commit |"
	[[ -n $pg_version ]] && echo "| PostgreSQL | $pg_version on the same machine (fsync on) |"
	echo "| load average | $load_start at the start, $load_end at the end |"
	echo

	echo "### Webhook ingest"
	echo
	echo "\`trainhook serve\` on a fresh database per run, \`internal/cmd/ingestbench\` on the same machine registering $(fmt_int "$INGEST_N")"
	echo "models, then sending one signed \`succeeded\` training delivery (~$PAYLOAD_BYTES bytes with its log) per model over"
	echo "loopback with C requests in flight, and checking every model is Ready with its output. Latency is"
	echo "per request, from send to the answer read (the answer comes after the commit). RSS is the server's"
	echo "peak (VmHWM, start-up and registration included); CPU is the server's user+system time during the"
	echo "deliveries divided by the deliveries."
	echo
	echo "| database | C | deliveries/s | p50 | p99 | server peak RSS | server CPU per delivery | deliveries/s per run | target |"
	echo "|---|---|---|---|---|---|---|---|---|"
	for db in "${kinds[@]}"; do
		for c in $INGEST_CONCURRENCY; do
			d=$tmp/ingest g="$db-c$c-run*.json"
			rate=$(vals "$d" "$g" deliveries_per_sec | median)
			p50=$(vals "$d" "$g" p50 | median)
			p99=$(vals "$d" "$g" p99 | median)
			rss=$(vals "$d" "$g" peak_rss_bytes | median)
			cpu_ms=$(vals "$d" "$g" cpu_seconds_per_1000 | median) # s per 1000 = ms per delivery
			target=
			[[ $db == postgres-random && $c == 32 ]] && target="$(pg_target "$rate" "$p99" short)"
			if [[ $db == sqlite-random && $c == 32 ]]; then
				target="$(random_target "$rate" "$p99")"
				[[ $PEER == 1 ]] && target="$target; $(peer_target "$rate" "$p99" short)"
			fi
			bad=
			for f in "$d"/$g; do flag "$f" passed || bad=" (a run FAILED)"; done
			case $db in
			sqlite) label=SQLite ;;
			sqlite-random) label="SQLite, deliveries in random order" ;;
			postgres) label="PostgreSQL, 1 instance" ;;
			postgres-random) label="PostgreSQL, 1 instance, deliveries in random order" ;;
			peer-full) label="Next.js route handler (validateWebhook + better-sqlite3), synchronous=FULL (durable)" ;;
			peer-normal) label="Next.js route handler (validateWebhook + better-sqlite3), synchronous=NORMAL (not durable)" ;;
			esac
			echo "| $label | $c | **$(fmt_int "$rate")**$bad | $(fmt '%.2f ms' "$p50") | $(fmt '%.2f ms' "$p99") | $(mib "$rss") | $(fmt '%.3f ms' "$cpu_ms") | $(runs_list "$d" "$g" deliveries_per_sec int) | $target |"
		done
	done
	echo
	echo "Targets at concurrency 32 on a 2-core machine, with the load generator on the same machine:"
	echo
	if [[ " $INGEST_CONCURRENCY " == *" 32 "* ]]; then
		r_rate=$(vals "$tmp/ingest" "sqlite-random-c32-run*.json" deliveries_per_sec | median)
		r_p99=$(vals "$tmp/ingest" "sqlite-random-c32-run*.json" p99 | median)
		echo "- SQLite, deliveries in random order: $(random_target "$r_rate" "$r_p99") ($(fmt_int "$r_rate")/s, p99 $(fmt '%.1f ms' "$r_p99"))"
		if [[ $PEER == 1 ]]; then
			echo "- SQLite, deliveries in random order: $(peer_target "$r_rate" "$r_p99" long)"
		else
			echo "- SQLite, deliveries in random order: ≥ 8× the durable Next.js handler's rate with p99 ≤ 15 ms: not measured (PEER=0)"
		fi
		if [[ $POSTGRES == 1 ]]; then
			echo "- PostgreSQL, one instance, deliveries in random order: $(pg_target "$(vals "$tmp/ingest" "postgres-random-c32-run*.json" deliveries_per_sec | median)" "$(vals "$tmp/ingest" "postgres-random-c32-run*.json" p99 | median)" long)"
		fi
	else
		echo "- not measured: INGEST_CONCURRENCY=\"$INGEST_CONCURRENCY\" has no 32"
	fi
	echo
	echo "Deliveries go out in the order the models were registered, except in the \"random order\" rows"
	echo "(\`--order random\`, a fixed shuffle): there each commit's deliveries are for models all over the"
	echo "database, as when trainings end in an order of their own, and a commit writes more pages."
	echo
	if [[ $PEER == 1 ]]; then
		echo "The Next.js rows are [bench/nextjs-peer](bench/nextjs-peer): the original setup's stack written by hand, a"
		echo "Next.js $(cd "$tmp/peer" && node -p 'require("next/package.json").version') App Router app (\`next build\`, then \`next start\` on Node $(node --version)) whose route handler checks"
		echo "each delivery with \`validateWebhook(request.clone(), secret)\` from the official \`replicate\` client"
		echo "($(cd "$tmp/peer" && node -p 'require("replicate/package.json").version')), answers 401 if it is not valid, and runs one prepared better-sqlite3"
		echo "($(cd "$tmp/peer" && node -p 'require("better-sqlite3/package.json").version')) \`UPDATE models SET status=?, output=?, error=? WHERE training_id=?\` on one connection in WAL mode."
		echo "With \`synchronous=FULL\` each answer comes after its commit is on disk, as trainhook's do: the like-for-like"
		echo "figure. \`synchronous=NORMAL\` (better-sqlite3's default in WAL mode) answers before the commit is"
		echo "durable. They run in the same rounds as trainhook's random-order rows, right after them, on the same"
		echo "ingestbench (registration, then the signed deliveries in random order, then every model read back"
		echo "Ready with its output); RSS and CPU are the \`next start\` node process's."
		echo
	fi

	if ((INSTANCES > 1)); then
		echo "### PostgreSQL: $INSTANCES instances on one database against one"
		echo
		echo "\`trainhook serve\` instances on one fresh PostgreSQL database per run, each with its own ingestbench, all"
		echo "sending at once: $(fmt_int "$INSTANCES_N") deliveries and $INSTANCES_CONCURRENCY requests in flight in all, split evenly, in registration"
		echo "order; one instance and $INSTANCES alternated in each round (which goes first alternates too). Deliveries/s is"
		echo "the sum over the instances, p50 the median of theirs, p99 the largest. Each instance dedupes against the"
		echo "others through the database and NOTIFYs its live updates."
		echo
		echo "| instances | deliveries/s | p50 | p99 | deliveries/s per run | p99 per run |"
		echo "|---|---|---|---|---|---|"
		for k in 1 "$INSTANCES"; do
			d=$tmp/instances g="i$k-run*.sum"
			bad=
			for f in "$d"/i$k-run*-*.json; do flag "$f" passed || bad=" (a run FAILED)"; done
			echo "| $k | **$(fmt_int "$(vals "$d" "$g" deliveries_per_sec | median)")**$bad | $(fmt '%.2f ms' "$(vals "$d" "$g" p50 | median)") | $(fmt '%.2f ms' "$(vals "$d" "$g" p99 | median)") | $(runs_list "$d" "$g" deliveries_per_sec int) | $(runs_list "$d" "$g" p99 '%.1f ms') |"
		done
		one=$(vals "$tmp/instances" "i1-run*.sum" deliveries_per_sec | median)
		many=$(vals "$tmp/instances" "i$INSTANCES-run*.sum" deliveries_per_sec | median)
		per=() ratios=()
		for ((k = 1; k <= RUNS; k++)); do
			r=$(awk -v a="$(vals "$tmp/instances" "i$INSTANCES-run$k.sum" deliveries_per_sec)" -v b="$(vals "$tmp/instances" "i1-run$k.sum" deliveries_per_sec)" 'BEGIN { if (a > 0 && b > 0) printf "%.0f", a / b * 100 }')
			per+=("${r:-n/a}%")
			[[ -n $r ]] && ratios+=("$r")
		done
		round_median=$(printf '%s\n' ${ratios[@]+"${ratios[@]}"} | median)
		verdict=missed
		[[ -n $round_median ]] && ((round_median >= 100)) && verdict=met
		echo
		echo "Target: $INSTANCES instances together at least as fast as one. $(fmt_int "$many") against $(fmt_int "$one")/s:"
		echo "$(awk -v a="$many" -v b="$one" 'BEGIN { if (a > 0 && b > 0) printf "%.0f%%", a / b * 100; else print "n/a" }') by the medians; each round's ratio (runs back to back, so drift cancels) $(IFS=/; echo "${per[*]}" | sed 's#/# / #g'),"
		echo "median ${round_median:-n/a}%: **$verdict** (judged by the median of the rounds' ratios)."
		echo
	fi

	if [[ $NOTIFY == 1 ]]; then
		echo "### Notifications: ingest with them off and on"
		echo
		echo "The ingest bench above on SQLite at concurrency $NOTIFY_CONCURRENCY, with notifications off and on in the same run"
		echo "(alternating which goes first). On: \`TRAINHOOK_NOTIFY_URL\` points at \`ingestbench --notify\`, a receiver on"
		echo "loopback in the bench process that verifies each request and answers 200; every delivery's \`model.ready\`"
		echo "is written to the outbox in the delivery's transaction; while the deliveries saturate the writer the"
		echo "sender keeps one request in flight (intake first), and sends the rest once the burst is over. The run"
		echo "passes only when every model was notified. Lag runs from the commit (the payload's \`timestamp\`) to"
		echo "the request's arrival; \"drained\" is how long after the last delivery the last model was notified."
		echo "The cost is the median over rounds of each round's (off − on) / off."
		echo
		echo "| notifications | deliveries/s | p50 | p99 | server CPU per delivery | notification lag p50 | p99 | drained | deliveries/s per run | target |"
		echo "|---|---|---|---|---|---|---|---|---|---|"
		d=$tmp/notify
		off_rate=$(vals "$d" "off-run*.json" deliveries_per_sec | median)
		for mode in off on; do
			g="$mode-run*.json"
			rate=$(vals "$d" "$g" deliveries_per_sec | median)
			bad=
			for f in "$d"/$g; do flag "$f" passed || bad=" (a run FAILED)"; done
			lag50="" lag99="" drained="" target=""
			if [[ $mode == on ]]; then
				lag50=$(fmt '%.1f ms' "$(lagvals "$d" "$g" p50 | median)")
				lag99=$(fmt '%.1f ms' "$(lagvals "$d" "$g" p99 | median)")
				drained=$(fmt '%.2f s' "$(vals "$d" "$g" drain_seconds | median)")
				# The cost per round (each round's on against its own off, run
				# back to back), then the median: drift between rounds cancels.
				cost=$(for f in "$d"/on-run*.json; do
					k=${f##*/on-run}
					on_k=$(vals "$d" "on-run$k" deliveries_per_sec) off_k=$(vals "$d" "off-run$k" deliveries_per_sec)
					[[ -n $on_k && -n $off_k ]] && awk -v on="$on_k" -v off="$off_k" 'BEGIN { printf "%.1f\n", (off - on) / off * 100 }'
				done | median)
				if [[ -n $cost ]]; then
					if awk -v c="$cost" 'BEGIN { exit !(c <= 15) }'; then
						target="costs $cost% (≤ 15%): **met**"
					else
						target="costs $cost% (≤ 15%): **missed**"
					fi
				fi
			fi
			echo "| $mode | **$(fmt_int "$rate")**$bad | $(fmt '%.2f ms' "$(vals "$d" "$g" p50 | median)") | $(fmt '%.2f ms' "$(vals "$d" "$g" p99 | median)") | $(fmt '%.3f ms' "$(vals "$d" "$g" cpu_seconds_per_1000 | median)") | ${lag50:-–} | ${lag99:-–} | ${drained:-–} | $(runs_list "$d" "$g" deliveries_per_sec int) | $target |"
		done
		echo
		echo "Target: notifications on cost at most 15% of ingest throughput."
		echo
	fi

	if [[ $DBSIZE == 1 ]]; then
		echo "### Ingest vs database size"
		echo
		echo "The random-order ingest on SQLite at concurrency $DBSIZE_CONCURRENCY, $(fmt_int "$DBSIZE_N") deliveries, on a copy of a database that"
		echo "already holds M models. Each size's database is written once by \`ingestbench seed\` (through the store"
		echo "package, so with trainhook's schema and compression): models created evenly over a year, the newest 1%"
		echo "in flight (Pending or Training), the others ended (7% Failed, 3% Canceled, the rest Ready with their"
		echo "output and a ~4 KB log), each with its history; no delivery log or webhook-id claims (pruned after"
		echo "\`TRAINHOOK_RETENTION\`, 30 days). Each run copies it (and fsyncs the copy) before \`trainhook serve\` starts."
		echo "The measured models are registered after the seeded ones, as new trainings are the newest models,"
		echo "with random training ids as Replicate's are, and their deliveries go out in random order (trainings end"
		echo "in an order of their own). So each delivery's row and its status-index entries are among the newest,"
		echo "while its lookup by training id lands anywhere in an index that grows with M."
		echo
		echo "| models already in the database | on disk | seeded in | deliveries/s | vs the smallest | p50 | p99 | server peak RSS | server CPU per delivery | server reads per delivery | deliveries/s per run | p99 per run |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
		first_rate=
		for m in $DBSIZE_MODELS; do
			d=$tmp/dbsize g="m$m-run*.json"
			rate=$(vals "$d" "$g" deliveries_per_sec | median)
			[[ -z $first_rate ]] && first_rate=$rate
			ratio=n/a
			[[ -n $rate && -n $first_rate ]] && ratio=$(awk -v a="$rate" -v b="$first_rate" 'BEGIN { printf "%.2f×", a / b }')
			bad=
			for f in "$d"/$g; do flag "$f" passed || bad=" (a run FAILED)"; done
			echo "| $(fmt_int "$m") | $(mib "$(num "$d/seed-$m.json" bytes)") | $(fmt '%.1f s' "$(num "$d/seed-$m.json" seconds)") | **$(fmt_int "$rate")**$bad | $ratio | $(fmt '%.2f ms' "$(vals "$d" "$g" p50 | median)") | $(fmt '%.2f ms' "$(vals "$d" "$g" p99 | median)") | $(mib "$(vals "$d" "$g" peak_rss_bytes | median)") | $(fmt '%.3f ms' "$(vals "$d" "$g" cpu_seconds_per_1000 | median)") | $(fmt '%.1f KiB' "$(vals "$d" "$g" read_kib_per_delivery | median)") | $(runs_list "$d" "$g" deliveries_per_sec int) | $(runs_list "$d" "$g" p99 '%.1f ms') |"
		done
		echo
		echo "SQLite's page cache is 16 MiB on the write connection and 8 MiB on each read connection (no mmap);"
		echo "the rest of the file is read from the kernel's page cache (this machine has $mem, so all of it stays in"
		echo "memory: a miss costs a read system call, not a disk seek). The training-id index takes about 37 bytes"
		echo "a model (37 MiB at a million), the models table about 1.9 KB a model. \"Server reads\" are the bytes the"
		echo "server read through system calls during the deliveries, per delivery: the ~$PAYLOAD_BYTES-byte request, and 4 KiB for"
		echo "every database page SQLite's cache did not hold (\`rchar\` of /proc/PID/io)."
		echo
	fi

	# LIFECYCLE_SIZES=" " leaves these runs out.
	if [[ -n ${LIFECYCLE_SIZES// /} ]]; then
		echo "### Polling: API cost and detection delay"
		echo
		echo "\`internal/cmd/lifecyclebench --mode polling\`: the Replicate simulator and trainhook (SQLite, \`TRAINHOOK_WEBHOOKS=off\`,"
		echo "\`TRAINHOOK_POLL_INTERVAL=$POLL_INTERVAL\`, \`TRAINHOOK_API_RATE_LIMIT=$LIFECYCLE_BUDGET\`) in one process on loopback. \"The app\""
		echo "starts N trainings of $LIFECYCLE_DURATION directly on the simulator with its own client (outside trainhook's budget, 8 at a"
		echo "time) and registers them with trainhook by id (\`Service.Register\`, as \`POST /api/models\` with \`training_id\`"
		echo "does); 10% fail part-way. From the first registration on, every API request the simulator counts is"
		echo "trainhook's polling. Detection delay runs from the training's \`completed_at\` at the simulator to the"
		echo "model's final transition in its history. Each run is bounded by $LIFECYCLE_MAX; a model not final by"
		echo "then counts with the time it had waited, so a percentile it can move is shown as \"≥\"."
		echo
		echo "| trainings in flight | API calls per training | API calls per minute | most in any 60 s (budget $LIFECYCLE_BUDGET) | list / get calls | detection delay p50 | p99 | max | not final within the bound | wrong final states | p50 per run |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|"
		for n in $LIFECYCLE_SIZES; do
			d=$tmp/lifecycle g="n$n-b$LIFECYCLE_BUDGET-run*.json"
			lb50= lb99= lbmax=
			for f in "$d"/$g; do
				flag "$f" detection_delay_p50_lower_bound && lb50="≥ "
				flag "$f" detection_delay_p99_lower_bound && lb99="≥ "
				[[ $(num "$f" not_final_within_max) =~ ^(0|)$ ]] || lbmax="≥ "
			done
			echo "| $(fmt_int "$n") | $(fmt '%.2f' "$(vals "$d" "$g" api_calls_per_training | median)") | $(fmt_int "$(vals "$d" "$g" api_calls_per_minute | median)") | $(fmt_int "$(vals "$d" "$g" max_requests_in_any_60s | median)") | $(fmt_int "$(vals "$d" "$g" api_list_calls | median)") / $(fmt_int "$(vals "$d" "$g" api_get_calls | median)") | **$lb50$(fmt '%.1f s' "$(vals "$d" "$g" detection_delay_p50_s | median)")** | $lb99$(fmt '%.1f s' "$(vals "$d" "$g" detection_delay_p99_s | median)") | $lbmax$(fmt '%.1f s' "$(vals "$d" "$g" detection_delay_max_s | median)") | $(fmt_int "$(vals "$d" "$g" not_final_within_max | median)") | $(fmt_int "$(vals "$d" "$g" wrong_or_missing_final_states | median)") | $(runs_list "$d" "$g" detection_delay_p50_s '%.1f s') |"
		done
		echo
		echo "API calls per minute are over the measured window (first registration to the last model final, or the"
		echo "bound), so they include the polls while the trainings ran. Medians per column; each run's full JSON is"
		echo "kept with KEEP_TMP=1."
		echo
	fi

	if [[ $POLL == 1 ]]; then
		echo "### Polling vs trainings in flight"
		echo
		echo "The polling bench above with N trainings of $LIFECYCLE_DURATION in flight at each budget (\`--budget B\`, TRAINHOOK_API_RATE_LIMIT),"
		echo "bounded by $LIFECYCLE_MAX a run. \"One sweep\" is what reading every in-flight training on the list takes:"
		echo "N/100 list calls (100 trainings a page), at the poller's 80% of the budget."
		echo
		echo "| budget | trainings in flight | one sweep: calls, time | API calls per training | API calls per minute | most in any 60 s | list / get calls | detection delay p50 | p99 | max | not final within the bound | p50 per run | p99 per run |"
		echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|"
		for b in $POLL_BUDGETS; do
			for n in $POLL_SIZES; do
				d=$tmp/lifecycle g="n$n-b$b-run*.json"
				lb50= lb99= lbmax=
				for f in "$d"/$g; do
					flag "$f" detection_delay_p50_lower_bound && lb50="≥ "
					flag "$f" detection_delay_p99_lower_bound && lb99="≥ "
					[[ $(num "$f" not_final_within_max) =~ ^(0|)$ ]] || lbmax="≥ "
				done
				sweep=$(awk -v n="$n" -v b="$b" 'BEGIN { c = int((n + 99) / 100); printf "%d, %.1f s", c, c / (b * 0.8 / 60) }')
				echo "| $b/min | $(fmt_int "$n") | $sweep | $(fmt '%.2f' "$(vals "$d" "$g" api_calls_per_training | median)") | $(fmt_int "$(vals "$d" "$g" api_calls_per_minute | median)") | $(fmt_int "$(vals "$d" "$g" max_requests_in_any_60s | median)") | $(fmt_int "$(vals "$d" "$g" api_list_calls | median)") / $(fmt_int "$(vals "$d" "$g" api_get_calls | median)") | **$lb50$(fmt '%.1f s' "$(vals "$d" "$g" detection_delay_p50_s | median)")** | $lb99$(fmt '%.1f s' "$(vals "$d" "$g" detection_delay_p99_s | median)") | $lbmax$(fmt '%.1f s' "$(vals "$d" "$g" detection_delay_max_s | median)") | $(fmt_int "$(vals "$d" "$g" not_final_within_max | median)") | $(runs_list "$d" "$g" detection_delay_p50_s '%.1f s') | $(runs_list "$d" "$g" detection_delay_p99_s '%.1f s') |"
			done
		done
		echo
		echo "A poll reads at most the pages its share of the budget pays for in half a lease (120 at 600/min); with more"
		echo "trainings in flight than those pages hold, the next poll goes on from the page where the last stopped, so"
		echo "the polls make one round of the list, applying each page's news of every training in flight."
		echo
	fi

	echo "### Footprint"
	echo
	echo "| figure | runs | median |"
	echo "|---|---|---|"
	echo "| binary size, \`go build\` | | $(mib "$size_default") ($(fmt_int "$size_default") bytes) |"
	echo "| binary size, \`-ldflags=\"-s -w\"\` | | $(mib "$size_stripped") ($(fmt_int "$size_stripped") bytes) |"
	for kind in empty large; do
		if [[ $kind == empty ]]; then what="fresh SQLite file (migrations included)"; else what="SQLite with $(fmt_int "$LARGE_DB_MODELS") Ready models ($(mib "$large_bytes") on disk)"; fi
		s=$(paste -sd/ "$tmp/footprint/$kind.startup" | sed 's#/# / #g')
		echo "| start-up to \`GET /readyz\` = 200, $what | $s ms | **$(fmt '%.0f ms' "$(median <"$tmp/footprint/$kind.startup")")** |"
	done
	for kind in empty large; do
		if [[ $kind == empty ]]; then what="fresh SQLite file"; else what="$(fmt_int "$LARGE_DB_MODELS") models"; fi
		r=$(while read -r b; do mib "$b"; echo; done <"$tmp/footprint/$kind.rss" | paste -sd/ | sed 's#/# / #g; s# MiB##g')
		echo "| idle RSS ${IDLE_WAIT} s after ready, $what (no token: no poller) | $r MiB | **$(mib "$(median <"$tmp/footprint/$kind.rss")")** |"
	done
	echo
	echo "Start-up is timed from just before the fork of \`trainhook serve\` to the first 200 from \`GET /readyz\`,"
	echo "polled every 5 ms; idle RSS is \`VmRSS\`."
	echo

	echo "### Commands"
	echo
	echo '```sh'
	echo "$invocation"
	echo "# which ran, with SECRET=$SECRET and NOTIFY_SECRET=$NOTIFY_SECRET (test keys), PORT and NPORT free loopback ports:"
	for c in "${commands[@]}"; do echo "$c"; done
	echo '```'
} >"$OUT"

log "wrote $OUT in $((elapsed / 60)) min $((elapsed % 60)) s"
if [[ $failed != 0 ]]; then
	log "FAIL: at least one run failed or found a problem (see the report and, with KEEP_TMP=1, $tmp)"
	exit 1
fi
