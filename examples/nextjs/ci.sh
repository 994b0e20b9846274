#!/usr/bin/env bash
# End to end, as an app uses trainhook: builds this Next.js example, starts
# trainhook's Replicate simulator, trainhook (webhook mode, notifying the
# example) and the example, starts a training through the example's own
# route, and checks the example's database shows the model Ready with the
# version trainhook recorded. Every notification passes through the
# example's route, which verifies it with the standardwebhooks package (a
# refused one is answered 401, is retried, and would never be delivered):
# the run fails unless every notification of the run was delivered.
#
# Usage: examples/nextjs/ci.sh   (from anywhere in the repo; needs go, node >= 20.9, npm, curl, jq)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
pids=()
app_group="" # next start runs its server as a child: stop the whole process group

cleanup() {
	if [[ -n "$app_group" ]]; then
		kill -TERM -- "-$app_group" 2>/dev/null || true
		for _ in $(seq 50); do kill -0 -- "-$app_group" 2>/dev/null || break; sleep 0.1; done
		kill -KILL -- "-$app_group" 2>/dev/null || true
	fi
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	rm -rf "$work"
}
trap cleanup EXIT

fail() {
	echo "nextjs example: FAIL: $*" >&2
	for f in sim.err trainhook.err next.out; do
		[[ -f "$work/$f" ]] && { echo "--- $f" >&2; tail -40 "$work/$f" >&2; }
	done
	exit 1
}

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }

wait_http() { # URL, what
	for _ in $(seq 300); do
		curl -fsS -o /dev/null "$1" 2>/dev/null && return 0
		sleep 0.1
	done
	fail "$2 did not answer at $1"
}

node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || a === 20 && b >= 9 ? 0 : 1)' \
	|| fail "Node.js $(node --version) is too old: Next.js 15 and better-sqlite3 12 need 20.9 or newer"
for tool in go npm curl jq; do command -v "$tool" >/dev/null || fail "$tool is not installed"; done

echo "nextjs example: building trainhook"
(cd "$root" && go build -o "$work/trainhook" ./cmd/trainhook)
bin="$work/trainhook"

echo "nextjs example: npm ci and next build"
cd "$here"
npm ci --no-audit --no-fund --loglevel=error
npx next build >"$work/build.out" 2>&1 || { cat "$work/build.out" >&2; fail "next build"; }

token="r8_nextjs_example_$$"
"$bin" fake-replicate --addr 127.0.0.1:0 --token "$token" --seed 1 --duration 4s --fail-rate 0 \
	--log-level warn >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
base=""
for _ in $(seq 100); do
	base="$(sed -n 's/^REPLICATE_BASE_URL=//p' "$work/sim.out")"
	[[ -n "$base" ]] && break
	sleep 0.1
done
[[ -n "$base" ]] || fail "the simulator did not start"

secret="$("$bin" notify new-secret)"
th_port="$(free_port)"
app_port="$(free_port)"
th="http://127.0.0.1:$th_port"
app="http://127.0.0.1:$app_port"

env -i PATH="$PATH" HOME="$HOME" \
	ADDR="127.0.0.1:$th_port" APP_URL="$th" TRAINHOOK_WEBHOOKS=on \
	REPLICATE_BASE_URL="$base" REPLICATE_API_TOKEN="$token" DATABASE_URL="$work/trainhook.db" \
	TRAINHOOK_POLL_INTERVAL=500ms TRAINHOOK_RECONCILE_AFTER=5s TRAINHOOK_LOG_FORMAT=text \
	TRAINHOOK_NOTIFY_URL="$app/api/trainhook" TRAINHOOK_NOTIFY_SECRET="$secret" \
	TRAINHOOK_NOTIFY_EVENTS=model.training,model.ready,model.failed,model.canceled \
	"$bin" serve >"$work/trainhook.out" 2>"$work/trainhook.err" &
pids+=($!)
wait_http "$th/readyz" "trainhook"

setsid env -i PATH="$PATH" HOME="$HOME" NODE_ENV=production \
	APP_DB="$work/app.db" TRAINHOOK_URL="$th" TRAINHOOK_NOTIFY_SECRET="$secret" \
	node node_modules/next/dist/bin/next start -H 127.0.0.1 -p "$app_port" >"$work/next.out" 2>&1 &
app_group=$! # setsid made it the leader of its own group
wait_http "$app/" "the example app"
echo "nextjs example: trainhook at $th, the app at $app"

# A forged notification is refused by the app's route.
code="$(curl -s -o /dev/null -w '%{http_code}' -X POST "$app/api/trainhook" -H 'content-type: application/json' \
	-H "webhook-id: evt_forged" -H "webhook-timestamp: $(date +%s)" -H "webhook-signature: v1,AAAA" \
	-d '{"type":"model.ready","timestamp":"2026-01-01T00:00:00Z","data":{"model":{"id":"x","name":"x","status":"Ready"},"sequence":9}}')"
[[ "$code" == 401 ]] || fail "a forged notification was answered $code, want 401"

started="$(curl -fsS -X POST "$app/api/train" -H 'content-type: application/json' \
	-d '{"name":"nextjs ci","destination":"trainhook-sim/nextjs-ci","input":{"input_images":"https://example.com/data.zip","trigger_word":"ZKX","steps":1000}}')" \
	|| fail "POST /api/train"
id="$(jq -r .id <<<"$started")"
echo "nextjs example: started model $id through the app"

row=""
for _ in $(seq 600); do
	row="$(curl -fsS "$app/api/models/$id")" || fail "GET the app's row"
	[[ "$(jq -r .status <<<"$row")" == Ready ]] && break
	sleep 0.1
done
[[ "$(jq -r .status <<<"$row")" == Ready ]] || fail "the app's row never became Ready: $row"

want="$(curl -fsS "$th/api/models/$id" | jq -r .output.version)"
got="$(jq -r .version <<<"$row")"
[[ -n "$want" && "$want" != null && "$got" == "$want" ]] || fail "the app has version '$got', trainhook '$want'"

# Every notification of the run reached the app and passed its verification.
notifications="$(curl -fsS "$th/api/notifications?model=$id")"
total="$(jq '.notifications | length' <<<"$notifications")"
delivered="$(jq '[.notifications[] | select(.status == "delivered")] | length' <<<"$notifications")"
ready="$(jq '[.notifications[] | select(.type == "model.ready")] | length' <<<"$notifications")"
[[ "$ready" == 1 && "$delivered" == "$total" ]] || fail "notifications of the run: $notifications"

# And the app's database file itself, read directly.
in_db="$(APP_DB="$work/app.db" ID="$id" node -e '
const row = new (require("better-sqlite3"))(process.env.APP_DB, { readonly: true })
  .prepare("SELECT status, version FROM models WHERE id = ?").get(process.env.ID);
console.log(row ? row.status + " " + row.version : "missing");')"
[[ "$in_db" == "Ready $want" ]] || fail "the app's database holds '$in_db', want 'Ready $want'"
echo "nextjs example: OK — the app's row is Ready with $got; $delivered notifications verified and delivered"
