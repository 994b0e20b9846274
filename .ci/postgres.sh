#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server for the tests and prints the lines
# that point them at it:
#
#   eval "$(bash .ci/postgres.sh)"        # start; exports TRAINHOOK_TEST_POSTGRES_URL
#   go test ./internal/store/postgres/...
#   bash .ci/postgres.sh stop             # stop it and delete its data
#
# It works on a fresh Debian machine as root (it installs the postgresql
# package if no server binaries are found, and runs the server as the
# unprivileged user "postgres", creating it if needed) and as an ordinary
# user who has the binaries. The server listens on 127.0.0.1 only, on the
# first free port from 55432 (TRAINHOOK_PG_PORT to choose another start),
# with its data in a new temporary directory, so several can run side by
# side on a shared machine. Settings are PostgreSQL's defaults (fsync on),
# so benchmarks measure durable commits.
#
# Only the export lines go to stdout; progress and errors go to stderr.
set -euo pipefail

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

# stop uses the directory the start exported, or the one named as $2.
if [ "${1:-}" = "stop" ]; then
  dir=${2:-${TRAINHOOK_TEST_POSTGRES_DIR:-}}
  [ -n "$dir" ] || die "stop: which server? set TRAINHOOK_TEST_POSTGRES_DIR (the start exports it) or pass the directory"
  [ -f "$dir/trainhook-postgres" ] || die "stop: $dir is not a directory this script made"
  bindir=$(cat "$dir/bindir")
  owner=$(stat -c %U "$dir/data")
  as_owner() { if [ "$(id -un)" = "$owner" ]; then "$@"; else runuser -u "$owner" -- "$@"; fi; }
  as_owner "$bindir/pg_ctl" -D "$dir/data" -m fast -w stop >&2 || log "server was not running"
  rm -rf "$dir"
  log "stopped and removed $dir"
  exit 0
fi
[ $# -eq 0 ] || [ "$1" = "start" ] || die "usage: postgres.sh [start|stop [DIR]]"

# The server binaries: on PATH, else Debian's versioned directory, else install.
find_bindir() {
  if command -v pg_ctl >/dev/null 2>&1 && command -v initdb >/dev/null 2>&1; then
    # Resolve links: /usr/local/bin may link only some of the binaries.
    dirname "$(readlink -f "$(command -v pg_ctl)")"
    return
  fi
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -n "$d" ] && [ -x "$d/initdb" ]; then echo "$d"; fi
}
bindir=$(find_bindir)
if [ -z "$bindir" ]; then
  [ "$(id -u)" -eq 0 ] || die "no PostgreSQL server binaries found; install the postgresql package (as root: apt-get install -y postgresql)"
  log "installing postgresql"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
  bindir=$(find_bindir)
  [ -n "$bindir" ] || die "postgresql installed, but no initdb found"
fi

# PostgreSQL refuses to run as root: as root, run it as "postgres".
run_as=$(id -un)
if [ "$(id -u)" -eq 0 ]; then
  run_as=postgres
  if ! id postgres >/dev/null 2>&1; then
    log "creating user postgres"
    useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
  fi
fi
as_server() { if [ "$run_as" = "$(id -un)" ]; then "$@"; else runuser -u "$run_as" -- "$@"; fi; }

dir=$(mktemp -d "${TMPDIR:-/tmp}/trainhook-postgres.XXXXXX")
chmod 755 "$dir"
touch "$dir/trainhook-postgres"
echo "$bindir" >"$dir/bindir"
mkdir "$dir/data"
chmod 700 "$dir/data"
chown "$run_as" "$dir" "$dir/data"

password=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
printf '%s\n' "$password" >"$dir/pwfile"
chown "$run_as" "$dir/pwfile"
chmod 600 "$dir/pwfile"
log "initdb in $dir/data ($bindir)"
as_server "$bindir/initdb" -D "$dir/data" -U trainhook --pwfile="$dir/pwfile" \
  --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log" >&2; die "initdb failed"; }
rm -f "$dir/pwfile"

# Each test creates its own database, and the suite's subtests run in
# parallel, each with a small pool: allow more connections than the default.
cat >>"$dir/data/postgresql.conf" <<'EOF'
listen_addresses = '127.0.0.1'
max_connections = 300
unix_socket_directories = ''
EOF

port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=${TRAINHOOK_PG_PORT:-55432}
started=""
for _ in $(seq 1 50); do
  if ! port_in_use "$port"; then
    # -w waits until the server accepts connections. Another process may
    # take the port between the check and the start: then try the next.
    if as_server "$bindir/pg_ctl" -D "$dir/data" -l "$dir/server.log" -o "-p $port" -w -t 60 start >&2; then
      started=yes
      break
    fi
    log "could not start on port $port; trying the next"
  fi
  port=$((port + 1))
done
if [ -z "$started" ]; then
  tail -n 20 "$dir/server.log" >&2 || true
  rm -rf "$dir"
  die "no free port to start PostgreSQL on"
fi
"$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -t 30 || die "server on port $port is not ready"
log "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') ready on 127.0.0.1:$port (data in $dir; log in $dir/server.log)"

echo "export TRAINHOOK_TEST_POSTGRES_URL='postgres://trainhook:$password@127.0.0.1:$port/postgres?sslmode=disable'"
echo "export TRAINHOOK_TEST_POSTGRES_DIR='$dir'"
