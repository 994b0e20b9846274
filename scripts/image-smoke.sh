#!/usr/bin/env bash
# Smoke-tests the container image with podman, as an operator runs it:
#   1. serve (the image's default command) with the database on a volume,
#      beside the Replicate simulator (the same image's fake-replicate) in
#      one network namespace, published on 127.0.0.1 only;
#   2. /readyz over the published port, and the image's HEALTHCHECK;
#   3. a training started through the API reaches Ready (webhooks from the
#      simulator into the container);
#   4. `trainhook backup` inside the running container;
#   5. stop (SIGTERM, exit 0) and start again: the model is still there;
#   6. the demo inside the image reaches Ready.
#
#   scripts/image-smoke.sh IMAGE        # e.g. localhost/trainhook:latest
set -euo pipefail
image=${1:?usage: image-smoke.sh IMAGE}
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }

run_id=smoke$$
sim=trainhook-$run_id-sim app=trainhook-$run_id-app demo=trainhook-$run_id-demo vol=trainhook-$run_id-data
token=smoke-api-token-0123456789abcdef0123 # 32+ characters: the API is reachable beyond loopback inside the container
secret=whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw
cleanup() {
  # One at a time: podman rm stops at the first name that does not exist.
  for c in "$app" "$demo" "$sim"; do
    podman rm -f -i -v -t 2 "$c" >/dev/null 2>&1 || true
  done
  podman volume rm -f "$vol" >/dev/null 2>&1 || true
}
trap cleanup EXIT
fail() {
  echo "image-smoke: $*" >&2
  for c in "$app" "$sim" "$demo"; do
    echo "--- logs of $c"; podman logs --tail 40 "$c" 2>&1 || true
  done
  exit 1
}

# A free port on the host's loopback.
port=
for _ in $(seq 50); do
  p=$((20000 + RANDOM % 20000))
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then port=$p; break; fi
done
[ -n "$port" ] || fail "no free port found"
base=http://127.0.0.1:$port
api() { curl -fsS --max-time 10 -H "Authorization: Bearer $token" "$@"; }
wait_ready() {
  for _ in $(seq 60); do
    curl -fsS --max-time 2 "$base/readyz" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  fail "$base/readyz did not answer 200 within 30s"
}
model_status() { api "$base/api/models/$1" | grep -o '"status":"[A-Za-z]*"' | head -1 | cut -d'"' -f4; }

echo "== the image"
podman image inspect --format '{{.Config.User}} {{.Config.Entrypoint}} {{.Config.Cmd}} {{.Config.StopSignal}} {{index .Config.Labels "org.opencontainers.image.version"}}' "$image"
[ "$(podman image inspect --format '{{.Config.User}}' "$image")" = 65532:65532 ] || fail "the image does not run as 65532:65532"
podman image inspect --format '{{json .Config.Healthcheck}}' "$image" | grep -q healthcheck || fail "the image has no HEALTHCHECK (build with --format docker)"
podman run --rm --no-healthcheck "$image" version
# The Replicate client needs CA certificates; scratch has none of its own.
podman create --name "$demo" "$image" >/dev/null
n=$(podman cp "$demo:/etc/ssl/certs/ca-certificates.crt" - | tar -xO | grep -c 'BEGIN CERTIFICATE' || true)
podman rm -v "$demo" >/dev/null
[ "${n:-0}" -gt 10 ] || fail "the image has no CA certificates (found $n)"
echo "CA certificates: $n"

echo "== serve beside the simulator, data on a volume"
podman volume create "$vol" >/dev/null
podman run -d --name "$sim" --no-healthcheck -p "127.0.0.1:$port:8080" "$image" \
  fake-replicate --addr 127.0.0.1:9000 --token r8_smoke --secret "$secret" --duration 3s --fail-rate 0 >/dev/null
start_app() {
  # Periodic health checks need systemd timers: without systemd podman
  # logs that it cannot schedule them, harmlessly. The check itself runs
  # with podman healthcheck run below.
  podman run -d --name "$app" --health-interval disable --network "container:$sim" -v "$vol:/data" \
    -e TRAINHOOK_API_TOKEN="$token" -e APP_URL=http://127.0.0.1:8080 \
    -e REPLICATE_BASE_URL=http://127.0.0.1:9000 -e REPLICATE_API_TOKEN=r8_smoke \
    -e REPLICATE_WEBHOOK_SECRET="$secret" -e TRAINHOOK_WEBHOOK_EVENTS=start,completed \
    "$image" >/dev/null
}
start_app
wait_ready
curl -fsS "$base/readyz"; echo
podman healthcheck run "$app" || fail "the image's HEALTHCHECK failed"

echo "== a training through the API, to Ready"
created=$(api -X POST -H 'Content-Type: application/json' "$base/api/models" \
  -d '{"name":"smoke","trainer":"ostris/flux-dev-lora-trainer","destination":"trainhook-sim/smoke","input":{"steps":10}}') || fail "POST /api/models failed"
id=$(echo "$created" | grep -o '"id":"[^"]*"' | head -1 | cut -d'"' -f4)
[ -n "$id" ] || fail "no model id in: $created"
st=
for _ in $(seq 60); do
  st=$(model_status "$id")
  case "$st" in Ready | Failed | Canceled) break ;; esac
  sleep 0.5
done
[ "$st" = Ready ] || fail "model $id is $st, not Ready, 30s after its start"
echo "model $id: $st"

echo "== backup inside the running container"
podman exec "$app" /usr/local/bin/trainhook backup /data/smoke-backup.db || fail "backup failed"

echo "== restart: the data is still there"
podman stop -t 20 "$app" >/dev/null
code=$(podman inspect --format '{{.State.ExitCode}}' "$app")
[ "$code" = 0 ] || fail "serve exited $code on SIGTERM, want 0"
podman rm -v "$app" >/dev/null
start_app # a new container on the same volume
wait_ready
st=$(model_status "$id")
[ "$st" = Ready ] || fail "after the restart model $id is '$st', want Ready"
echo "model $id after the restart: $st"
podman run --rm --no-healthcheck "$image" healthcheck --url http://127.0.0.1:1 >/dev/null 2>&1 &&
  fail "healthcheck reported ready with nothing listening"

echo "== the demo inside the image"
podman run -d --name "$demo" --no-healthcheck "$image" demo --addr 127.0.0.1:0 --duration 3s --data /tmp/demo >/dev/null
for _ in $(seq 120); do
  # Into a variable first: with pipefail, grep -q leaving early would fail
  # the pipeline when podman then writes the next line.
  demo_log=$(podman logs "$demo" 2>&1 || true)
  grep -q '\] Ready: new version' <<<"$demo_log" && break
  sleep 0.5
done
podman logs "$demo" 2>&1 | tail -4
demo_log=$(podman logs "$demo" 2>&1 || true)
grep -q '\] Ready: new version' <<<"$demo_log" || fail "the demo's sample training did not reach Ready within 60s"
echo "image-smoke: ok"
