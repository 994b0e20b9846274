#!/usr/bin/env bash
# Runs the example end to end, all on 127.0.0.1: builds it, starts trainhook's
# Replicate simulator, trainhook (notifying the example) and the built example,
# starts a training through the example's own route, and checks that the
# example's database shows the model Ready with its version, that every
# notification the example received passed the standardwebhooks check, and
# that a forged or repeated notification changes nothing.
#
# Usage: examples/nextjs/ci.sh   (from anywhere in the repo)
#        TRAINHOOK_BIN=/path/to/trainhook examples/nextjs/ci.sh
# npm ci runs when CI is set or node_modules is missing.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
work="$(mktemp -d)"
pids=()
app_pid=""
export NEXT_TELEMETRY_DISABLED=1

log() { printf 'example: [%3ds] %s\n' "$SECONDS" "$*"; }
fail() {
	printf 'example: FAIL: %s\n' "$*" >&2
	for f in sim.err trainhook.log app.log; do
		[[ -s "$work/$f" ]] || continue
		printf '\n--- %s (last 40 lines)\n' "$f" >&2
		tail -n 40 "$work/$f" >&2
	done
	exit 1
}

cleanup() {
	[[ -n "$app_pid" ]] && kill -TERM -- "-$app_pid" 2>/dev/null || true
	for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
	for pid in "${pids[@]}"; do
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
	done
	[[ -n "$app_pid" ]] && kill -KILL -- "-$app_pid" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

# wait_for SECONDS WHAT PID COMMAND...: run COMMAND until it succeeds, failing
# after SECONDS or as soon as the process PID has exited.
wait_for() {
	local seconds=$1 what=$2 pid=$3
	shift 3
	local deadline=$((SECONDS + seconds))
	until "$@" >/dev/null 2>&1; do
		kill -0 "$pid" 2>/dev/null || fail "$what exited"
		((SECONDS < deadline)) || fail "$what not ready after ${seconds}s"
		sleep 0.2
	done
}

bin="${TRAINHOOK_BIN:-}"
if [[ -z "$bin" ]]; then
	log "building trainhook"
	(cd "$root" && go build -o "$work/trainhook" ./cmd/trainhook)
	bin="$work/trainhook"
fi

cd "$here"
if [[ -n "${CI:-}" || ! -d node_modules/next ]]; then
	log "npm ci"
	npm ci --no-audit --no-fund --loglevel=error
fi
log "next build"
node_modules/.bin/next build >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; fail "next build failed"; }

# The simulator: trainings run 6 s and always succeed.
replicate_token="r8_example_$$"
"$bin" fake-replicate --addr 127.0.0.1:0 --token "$replicate_token" --seed 1 \
	--duration 6s --fail-rate 0 --log-level warn >"$work/sim.out" 2>"$work/sim.err" &
pids+=($!)
sim_pid=$!
wait_for 20 "the simulator" "$sim_pid" grep -q '^REPLICATE_BASE_URL=' "$work/sim.out"
replicate_url="$(sed -n 's/^REPLICATE_BASE_URL=//p' "$work/sim.out")"
# The simulator's account owns the destinations that trainings may push to.
owner="$(curl -fsS -H "Authorization: Bearer $replicate_token" "$replicate_url/v1/account" |
	node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).username))')"
log "simulator at $replicate_url (account $owner)"

# The example's port is chosen first: trainhook must know where to notify.
app_port="$(node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
app_url="http://127.0.0.1:$app_port"

if "$bin" notify new-secret >"$work/secret" 2>/dev/null; then
	notify_secret="$(tr -d '[:space:]' <"$work/secret")"
else
	notify_secret="whsec_$(node -e 'console.log(require("crypto").randomBytes(32).toString("base64"))')"
fi
api_token="example-$(node -e 'console.log(require("crypto").randomBytes(16).toString("hex"))')"

DATABASE_URL="$work/trainhook.db" ADDR=127.0.0.1:0 TRAINHOOK_WEBHOOKS=off \
	TRAINHOOK_POLL_INTERVAL=500ms TRAINHOOK_LOG_FORMAT=json \
	REPLICATE_BASE_URL="$replicate_url" REPLICATE_API_TOKEN="$replicate_token" \
	TRAINHOOK_API_TOKEN="$api_token" \
	TRAINHOOK_NOTIFY_URL="$app_url/api/trainhook" TRAINHOOK_NOTIFY_SECRET="$notify_secret" \
	TRAINHOOK_NOTIFY_EVENTS=model.training,model.ready,model.failed,model.canceled \
	"$bin" serve >"$work/trainhook.log" 2>&1 &
pids+=($!)
trainhook_pid=$!
wait_for 20 "trainhook" "$trainhook_pid" grep -q '"msg":"listening"' "$work/trainhook.log"
trainhook_url="$(grep -o '"msg":"listening","url":"[^"]*"' "$work/trainhook.log" | head -n 1 | sed 's/.*"url":"//; s/"$//')"
wait_for 20 "trainhook" "$trainhook_pid" curl -fsS "$trainhook_url/readyz"
log "trainhook at $trainhook_url, notifying $app_url/api/trainhook"

export DATABASE_PATH="$work/app.db" TRAINHOOK_URL="$trainhook_url" TRAINHOOK_API_TOKEN="$api_token" \
	TRAINHOOK_NOTIFY_SECRET="$notify_secret" REPLICATE_DESTINATION_OWNER="$owner"
# In its own process group, so that cleanup stops next's workers too.
setsid node_modules/.bin/next start -p "$app_port" -H 127.0.0.1 >"$work/app.log" 2>&1 &
pids+=($!)
app_pid=$!
wait_for 30 "the example" "$app_pid" curl -fsS "$app_url/api/models"
log "example at $app_url"

# Start a training the way the app's users would: through the app.
started="$(curl -sS -w '\n%{http_code}' -X POST "$app_url/api/models" -H 'Content-Type: application/json' \
	-d '{"name": "CI portrait LoRA", "input_images": "https://example.com/datasets/zkx.zip", "trigger_word": "ZKX"}')"
code="$(tail -n 1 <<<"$started")"
[[ "$code" == 201 ]] || fail "POST $app_url/api/models answered $code: $(head -n -1 <<<"$started")"
model_id="$(head -n -1 <<<"$started" | node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).id))')"
log "started app model $model_id"

# query SQL [PARAM...]: runs SQL on the example's own database, prints the rows as JSON.
query() {
	node -e 'const db = new (require("better-sqlite3"))(process.argv[1], { readonly: true, fileMustExist: true });
		console.log(JSON.stringify(db.prepare(process.argv[2]).all(...process.argv.slice(3))));' \
		"$DATABASE_PATH" "$@"
}

deadline=$((SECONDS + 90))
while :; do
	row="$(query 'SELECT status, version, trainhook_id FROM models WHERE id = ?' "$model_id")"
	case "$row" in
	*'"status":"Ready"'*) break ;;
	*'"status":"Failed"'* | *'"status":"Canceled"'*) fail "the example's row ended as $row" ;;
	esac
	! grep -q '^trainhook notification rejected:' "$work/app.log" || fail "a notification failed verification"
	((SECONDS < deadline)) || fail "the example's row is still $row after 90 s"
	kill -0 "$app_pid" 2>/dev/null || fail "the example exited"
	kill -0 "$trainhook_pid" 2>/dev/null || fail "trainhook exited"
	sleep 0.5
done
log "the example's database: $row"
version="$(node -p 'JSON.parse(process.argv[1])[0].version' "$row")"
curl -fsS "$app_url/" | grep -q "$version" || fail "the example's page does not show version $version"

# The version in the app's row is the one trainhook has for the model.
ROW="$row" TRAINHOOK_MODEL="$(curl -fsS -H "Authorization: Bearer $api_token" \
	"$trainhook_url/api/models/$(node -p 'JSON.parse(process.argv[1])[0].trainhook_id' "$row")")" \
	OWNER="$owner" node -e '
	const row = JSON.parse(process.env.ROW)[0], m = JSON.parse(process.env.TRAINHOOK_MODEL);
	const want = m.output && m.output.version;
	if (m.status !== "Ready" || !want) { console.error("trainhook has the model as", m.status, want); process.exit(1); }
	if (row.version !== want) { console.error("version", row.version, "in the app, trainhook has", want); process.exit(1); }
	if (!want.startsWith(process.env.OWNER + "/")) { console.error("version", want, "is not on", process.env.OWNER); process.exit(1); }
' || fail "the app's version does not match trainhook's"

# Every notification the example received went through the standardwebhooks
# check in app/api/trainhook/route.ts, which logs one line per request.
verified="$(grep -c '^trainhook notification verified:' "$work/app.log" || true)"
rejected="$(grep -c '^trainhook notification rejected:' "$work/app.log" || true)"
grep '^trainhook notification' "$work/app.log" | sed 's/^/  /'
((rejected == 0)) || fail "$rejected notification(s) failed verification"
grep -q "^trainhook notification verified: .* type=model.training model=" "$work/app.log" || fail "no model.training notification"
grep -q "^trainhook notification verified: .* type=model.ready model=.* status=Ready .*outcome=applied" "$work/app.log" ||
	fail "no model.ready notification applied"
stored="$(query 'SELECT count(*) AS n FROM notifications')"
[[ "$stored" == "[{\"n\":$verified}]" ]] || fail "$verified verified notifications, the example stored $stored"

# trainhook's side agrees: every notification it sent is delivered, and the
# example verified and stored exactly those webhook-ids.
deadline=$((SECONDS + 20))
until sent="$(curl -fsS -H "Authorization: Bearer $api_token" "$trainhook_url/api/notifications")" &&
	SENT="$sent" STORED="$(query 'SELECT webhook_id FROM notifications')" node -e '
	const sent = JSON.parse(process.env.SENT).notifications;
	const stored = JSON.parse(process.env.STORED).map((r) => r.webhook_id).sort();
	const ids = sent.map((n) => n.event_id).sort();
	const notDelivered = sent.filter((n) => n.status !== "delivered");
	if (notDelivered.length) { console.error("trainhook has", JSON.stringify(notDelivered)); process.exit(1); }
	if (JSON.stringify(ids) !== JSON.stringify(stored)) { console.error("trainhook sent", ids, "the example stored", stored); process.exit(1); }
'; do
	((SECONDS < deadline)) || fail "trainhook's notifications and the example's disagree after 20 s"
	sleep 0.5
done

# A forged notification is refused with 400 and changes nothing; a repeated
# webhook-id, even signed with the right key, changes nothing either.
ready_id="$(query "SELECT webhook_id FROM notifications WHERE type = 'model.ready'" | node -p 'JSON.parse(require("fs").readFileSync(0))[0].webhook_id')"
READY_ID="$ready_id" APP_URL="$app_url" TRAINHOOK_ID="$(node -p 'JSON.parse(process.argv[1])[0].trainhook_id' "$row")" \
	APP_MODEL_ID="$model_id" node -e '
	const { Webhook } = require("standardwebhooks");
	const crypto = require("crypto");
	const body = JSON.stringify({ type: "model.failed", timestamp: new Date().toISOString(), data: {
		model: { id: process.env.TRAINHOOK_ID, status: "Failed", error: "forged", metadata: { app_model_id: process.env.APP_MODEL_ID } },
		sequence: 1000 } });
	const post = (headers) => fetch(process.env.APP_URL + "/api/trainhook", { method: "POST", body,
		headers: { "content-type": "application/json", ...headers } });
	const sign = (secret, id, at) => new Webhook(secret).sign(id, at, body);
	(async () => {
		const at = new Date();
		const otherKey = "whsec_" + crypto.randomBytes(32).toString("base64");
		const forged = await post({ "webhook-id": "msg_forged", "webhook-timestamp": String(Math.floor(at / 1000)),
			"webhook-signature": sign(otherKey, "msg_forged", at) });
		if (forged.status !== 400) throw new Error("a forged notification got " + forged.status + ", want 400");
		const repeat = await post({ "webhook-id": process.env.READY_ID, "webhook-timestamp": String(Math.floor(at / 1000)),
			"webhook-signature": sign(process.env.TRAINHOOK_NOTIFY_SECRET, process.env.READY_ID, at) });
		const out = await repeat.json();
		if (repeat.status !== 200 || out.outcome !== "duplicate") throw new Error("a repeated webhook-id got " + repeat.status + " " + JSON.stringify(out) + ", want 200 duplicate");
	})().catch((e) => { console.error(e.message); process.exit(1); });
' || fail "forged or repeated notification"
after="$(query 'SELECT status, version, trainhook_id FROM models WHERE id = ?' "$model_id")"
[[ "$after" == "$row" ]] || fail "a forged or repeated notification changed the row: $row -> $after"

log "$verified notifications verified, 0 rejected; model Ready in the app's database"
