#!/usr/bin/env bash
# Checks the deployment files in deploy/ with the tools that run them:
#   - systemd-analyze verify and security on deploy/trainhook.service;
#   - promtool check and test on deploy/prometheus/;
#   - nginx and Caddy, with deploy/nginx.conf and deploy/Caddyfile on
#     loopback ports, in front of a real trainhook: the webhook path is
#     served over plain HTTP (not redirected), a 5 MB delivery passes the
#     proxy, other plain HTTP requests are redirected, /metrics is not
#     exposed.
#
#   scripts/check-deploy.sh BINARY     # a trainhook binary (release.sh builds one)
#
# Needs systemd (systemd-analyze), prometheus (promtool), nginx, caddy,
# openssl and curl; .ci/run installs them.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${1:?usage: check-deploy.sh BINARY}")
work=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
fail() { echo "check-deploy: $*" >&2; exit 1; }

freeport() {
  local p
  for _ in $(seq 50); do
    p=$((20000 + RANDOM % 20000))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return; fi
  done
  fail "no free port"
}
waitport() {
  for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  fail "nothing listens on 127.0.0.1:$1 after 10s"
}

echo "== systemd unit"
# The unit names /usr/local/bin/trainhook; verify checks that it exists.
sed "s#^ExecStart=/usr/local/bin/trainhook #ExecStart=$bin #" deploy/trainhook.service >"$work/trainhook.service"
systemd-analyze verify "$work/trainhook.service"
# Exposure 0 (locked down) to 10 (none); the unit scores about 1.2.
systemd-analyze security --offline=true --threshold=20 "$work/trainhook.service" | tail -1

echo "== Prometheus"
promtool check rules deploy/prometheus/trainhook-alerts.yml
(cd deploy/prometheus && promtool test rules trainhook-alerts_test.yml)
mkdir -p "$work/prom"
cp deploy/prometheus/trainhook-alerts.yml "$work/prom/"
echo "token" >"$work/prom/token"
sed "s#/etc/prometheus/trainhook-token#$work/prom/token#" deploy/prometheus/prometheus.yml >"$work/prom/prometheus.yml"
promtool check config "$work/prom/prometheus.yml"

echo "== trainhook behind the proxies"
up=$(freeport)
# APP_URL names the public host the proxies pass on as Host (trainhook answers
# only to it and to loopback names); webhooks off, since nothing here is Replicate.
DATABASE_URL="$work/th.db" ADDR="127.0.0.1:$up" PORT= APP_URL=https://trainhook.example.com TRAINHOOK_WEBHOOKS=off \
  REPLICATE_API_TOKEN= TRAINHOOK_API_TOKEN= \
  REPLICATE_WEBHOOK_SECRET=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw TRAINHOOK_LOG_FORMAT=json \
  "$bin" serve >"$work/th.log" 2>&1 &
pids+=($!)
waitport "$up"
head -c 5000000 /dev/zero | tr '\0' 'x' | sed 's/^/{"id":"big","status":"processing","logs":"/; s/$/"}/' >"$work/big.json"
host=trainhook.example.com

# check NAME HTTP_PORT HTTPS_PORT REDIRECT_CODE
check() {
  local name=$1 hp=$2 sp=$3 redirect=$4 code
  local c=(curl -sS -k --max-time 10 -o "$work/out" -w '%{http_code}' --resolve "$host:$hp:127.0.0.1" --resolve "$host:$sp:127.0.0.1")
  code=$("${c[@]}" -X POST -H 'Content-Type: application/json' -d '{"id":"t","status":"succeeded"}' "http://$host:$hp/api/webhooks/replicate/completed")
  [ "$code" = 401 ] && grep -q 'webhook signature' "$work/out" ||
    fail "$name: an unsigned webhook over plain HTTP got $code $(cat "$work/out"), want trainhook's 401 (not a redirect)"
  code=$("${c[@]}" -X POST -H 'Content-Type: application/json' -d '{}' "http://$host:$hp/api/webhooks/replicate/completed/")
  [ "$code" = 401 ] || fail "$name: the webhook path with a trailing slash over plain HTTP got $code, want 401"
  code=$("${c[@]}" -X POST -H 'Content-Type: application/json' --data-binary "@$work/big.json" "https://$host:$sp/api/webhooks/replicate/completed")
  [ "$code" = 401 ] || fail "$name: a 5 MB webhook over HTTPS got $code $(head -c 300 "$work/out"), want trainhook's 401 (the proxy's body limit is too low?)"
  code=$("${c[@]}" "http://$host:$hp/models/new")
  [ "$code" = "$redirect" ] || fail "$name: a page over plain HTTP got $code, want a $redirect redirect to HTTPS"
  code=$("${c[@]}" "https://$host:$sp/readyz")
  [ "$code" = 200 ] || fail "$name: /readyz over HTTPS got $code"
  code=$("${c[@]}" "https://$host:$sp/metrics")
  [ "$code" = 404 ] || fail "$name: /metrics through the proxy got $code, want 404"
  echo "$name: ok"
}

echo "-- nginx"
n=$work/nginx
mkdir -p "$n/tmp"
# nginx's workers (nobody, when started by root) buffer large bodies there.
chmod 0755 "$work" "$n"
chmod 0777 "$n/tmp"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=$host" -keyout "$n/key.pem" -out "$n/cert.pem" 2>/dev/null
np=$(freeport) nsp=$(freeport)
sed -e "s#listen 80;#listen 127.0.0.1:$np;#" -e "s#listen 443 ssl http2;#listen 127.0.0.1:$nsp ssl http2;#" -e '/listen \[::\]/d' \
  -e "s#/etc/letsencrypt/live/$host/fullchain.pem#$n/cert.pem#" -e "s#/etc/letsencrypt/live/$host/privkey.pem#$n/key.pem#" \
  -e "s#127.0.0.1:8080#127.0.0.1:$up#" deploy/nginx.conf >"$n/site.conf"
cat >"$n/nginx.conf" <<CONF
daemon off;
pid $n/nginx.pid;
error_log $n/error.log;
events {}
http {
  access_log off;
  client_body_temp_path $n/tmp/body;
  proxy_temp_path $n/tmp/proxy;
  fastcgi_temp_path $n/tmp/fastcgi;
  uwsgi_temp_path $n/tmp/uwsgi;
  scgi_temp_path $n/tmp/scgi;
  include $n/site.conf;
}
CONF
nginx -t -q -p "$n" -c "$n/nginx.conf"
nginx -p "$n" -c "$n/nginx.conf" &
pids+=($!)
waitport "$nsp"
check nginx "$np" "$nsp" 301 || { cat "$n/error.log" >&2; exit 1; }

echo "-- Caddy"
c=$work/caddy
mkdir -p "$c"
cp=$(freeport) csp=$(freeport)
{
  printf '{\n\tadmin off\n\thttp_port %s\n\thttps_port %s\n\tlocal_certs\n\tskip_install_trust\n\tstorage file_system %s\n}\n\n' "$cp" "$csp" "$c/data"
  sed -e "s#127.0.0.1:8080#127.0.0.1:$up#" -e "s#^http://$host {#http://$host:$cp {#" deploy/Caddyfile
} >"$c/Caddyfile"
caddy validate --adapter caddyfile --config "$c/Caddyfile" >/dev/null 2>"$c/validate.log" || { cat "$c/validate.log" >&2; fail "caddy validate"; }
HOME=$c XDG_DATA_HOME=$c XDG_CONFIG_HOME=$c caddy run --adapter caddyfile --config "$c/Caddyfile" >"$c/log" 2>&1 &
pids+=($!)
waitport "$csp"
waitport "$cp"
check caddy "$cp" "$csp" 308 || { tail -20 "$c/log" >&2; exit 1; }
echo "check-deploy: ok"
