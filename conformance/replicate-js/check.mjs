// Conformance of trainhook's Replicate simulator (trainhook fake-replicate)
// against Replicate's official JavaScript client, the npm package
// "replicate" pinned in package.json. If the simulator answers in a shape
// the official client cannot use, or signs webhooks in a way its
// validateWebhook refuses, a check here fails.
//
// Usage: node check.mjs [BASE_URL]   (or REPLICATE_BASE_URL=...)
// The simulator should run with --fail-rate 0 and a short --duration (a
// few seconds); REPLICATE_API_TOKEN is the token it accepts.

import http from "node:http";
import Replicate, { validateWebhook, parseProgressFromLogs } from "replicate";

const FLUX_TRAINER = { owner: "ostris", name: "flux-dev-lora-trainer" };
const WAIT_MS = 30_000;

let baseUrl = process.argv[2] || process.env.REPLICATE_BASE_URL;
if (!baseUrl) {
  console.error("usage: node check.mjs BASE_URL (or set REPLICATE_BASE_URL)");
  process.exit(2);
}
baseUrl = baseUrl.replace(/\/+$/, "");
if (!baseUrl.endsWith("/v1")) baseUrl += "/v1";
const host = new URL(baseUrl).hostname;
if (!["127.0.0.1", "localhost", "[::1]", "::1"].includes(host)) {
  console.error(`refusing to run against ${baseUrl}: the simulator runs on loopback`);
  process.exit(2);
}
const token = process.env.REPLICATE_API_TOKEN || "r8_conformance";
const replicate = new Replicate({ auth: token, baseUrl, userAgent: "trainhook-conformance" });

let passed = 0;
let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    passed++;
    console.log(`ok - ${name}`);
  } catch (err) {
    failed++;
    console.log(`not ok - ${name}: ${err && err.stack ? err.stack : err}`);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(`assertion failed: ${msg}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(what, fn, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}
async function apiStatus(promise) {
  try {
    await promise;
  } catch (err) {
    if (err && err.response) return { status: err.response.status, message: err.message };
    throw err;
  }
  throw new Error("the call succeeded; an API error was expected");
}

// A webhook receiver on loopback. It answers 500 to the first terminal
// delivery of a training whose URL has ?fail=1, to see that event retried.
const deliveries = [];
const failedOnce = new Set();
const receiver = http.createServer((req, res) => {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    const body = Buffer.concat(chunks).toString("utf8");
    const url = new URL(req.url, "http://127.0.0.1");
    const d = { headers: { ...req.headers }, body, query: Object.fromEntries(url.searchParams) };
    let status = 200;
    let terminal = false;
    try {
      terminal = ["succeeded", "failed", "canceled", "aborted"].includes(JSON.parse(body).status);
    } catch {
      // not JSON: recorded, and the checks will say so
    }
    if (d.query.fail === "1" && terminal && !failedOnce.has(d.query.job)) {
      failedOnce.add(d.query.job);
      status = 500;
    }
    d.answered = status;
    deliveries.push(d);
    res.writeHead(status);
    res.end();
  });
});
await new Promise((r) => receiver.listen(0, "127.0.0.1", r));
const hookBase = `http://127.0.0.1:${receiver.address().port}/hooks/replicate`;
const deliveriesFor = (id) => deliveries.filter((d) => JSON.parse(d.body).id === id);

let account, trainerVersion, dest, secret, trained, canceled;

await check("accounts.current returns the account", async () => {
  account = await replicate.accounts.current();
  assert(typeof account.username === "string" && account.username.length > 0, "username");
  assert(account.type === "user" || account.type === "organization", `type ${account.type}`);
});

await check("models.get resolves the trainer's latest version", async () => {
  const m = await replicate.models.get(FLUX_TRAINER.owner, FLUX_TRAINER.name);
  assert(m.owner === FLUX_TRAINER.owner && m.name === FLUX_TRAINER.name, "owner/name");
  assert(m.latest_version && /^[0-9a-f]{64}$/.test(m.latest_version.id), "latest_version.id is 64 hex");
  trainerVersion = m.latest_version.id;
  const versions = await replicate.models.versions.list(FLUX_TRAINER.owner, FLUX_TRAINER.name);
  assert(versions.results[0].id === trainerVersion, "versions.list is newest first");
});

await check("models.create creates a destination; a second create is 409", async () => {
  const name = `conformance-${Date.now().toString(36)}`;
  const m = await replicate.models.create(account.username, name, { visibility: "private", hardware: "cpu", description: "JS conformance" });
  assert(m.owner === account.username && m.name === name && m.visibility === "private", JSON.stringify(m));
  assert(m.latest_version === null, "a new model has no version");
  dest = `${account.username}/${name}`;
  const again = await apiStatus(replicate.models.create(account.username, name, { visibility: "private", hardware: "cpu" }));
  assert(again.status === 409, `status ${again.status}`);
});

await check("webhooks.default.secret.get returns a whsec_ key", async () => {
  const s = await replicate.webhooks.default.secret.get();
  assert(/^whsec_[A-Za-z0-9+/=]{32,}$/.test(s.key), `key ${s.key}`);
  secret = s.key;
});

await check("trainings.create starts a training shaped like Replicate's", async () => {
  trained = await replicate.trainings.create(FLUX_TRAINER.owner, FLUX_TRAINER.name, trainerVersion, {
    destination: dest,
    input: { input_images: "https://example.com/data.zip", trigger_word: "ZKX", steps: 400 },
    webhook: `${hookBase}?job=trained&fail=1`,
    webhook_events_filter: ["start", "logs", "completed"],
  });
  assert(/^[a-z0-9]{26}$/.test(trained.id), `id ${trained.id}`);
  assert(trained.status === "starting", `status ${trained.status}`);
  assert(trained.model === "ostris/flux-dev-lora-trainer" && trained.version === trainerVersion, "model/version");
  assert(trained.input.trigger_word === "ZKX", "input echoed");
  assert(!("destination" in trained), "no destination field");
  assert(trained.urls && trained.urls.get && trained.urls.cancel, "urls.get and urls.cancel");
  assert(trained.webhook.startsWith(hookBase), "webhook echoed");
  assert(!Number.isNaN(Date.parse(trained.created_at)), "created_at parses");
});

await check("trainings.create to a missing destination is 404", async () => {
  const r = await apiStatus(
    replicate.trainings.create(FLUX_TRAINER.owner, FLUX_TRAINER.name, trainerVersion, {
      destination: `${account.username}/does-not-exist`,
      input: { steps: 1 },
    })
  );
  assert(r.status === 404 && r.message.includes("The specified training destination does not exist"), r.message);
});

await check("trainings.create with an unknown version is 422", async () => {
  const r = await apiStatus(replicate.trainings.create(FLUX_TRAINER.owner, FLUX_TRAINER.name, "0".repeat(64), { destination: dest, input: {} }));
  assert(r.status === 422 && r.message.includes("Invalid version"), r.message);
});

await check("a wrong token is 401", async () => {
  const bad = new Replicate({ auth: "r8_wrong_token_for_conformance", baseUrl });
  const r = await apiStatus(bad.accounts.current());
  assert(r.status === 401, `status ${r.status}`);
});

await check("trainings.get shows progress that parseProgressFromLogs reads", async () => {
  const seen = await until("a processing training with progress", async () => {
    const t = await replicate.trainings.get(trained.id);
    assert(t.status === "starting" || t.status === "processing", `status ${t.status} before the end`);
    const p = parseProgressFromLogs(t);
    return t.status === "processing" && p && p.current > 0 && p.current < p.total ? { t, p } : null;
  });
  assert(seen.p.total === 400 && seen.p.percentage > 0 && seen.p.percentage < 1, JSON.stringify(seen.p));
  assert(seen.t.started_at && seen.t.completed_at === null, "started_at set, completed_at null");
});

await check("trainings.get reaches succeeded with output and metrics", async () => {
  const t = await until("the training to finish", async () => {
    const t = await replicate.trainings.get(trained.id);
    return ["succeeded", "failed", "canceled", "aborted"].includes(t.status) ? t : null;
  });
  assert(t.status === "succeeded", `status ${t.status} (${t.error})`);
  assert(t.output && t.output.version.startsWith(`${dest}:`) && /\/trained_model\.tar$/.test(t.output.weights), JSON.stringify(t.output));
  const p = parseProgressFromLogs(t.logs);
  assert(p && p.percentage === 1 && p.current === p.total, JSON.stringify(p));
  const predict = (Date.parse(t.completed_at) - Date.parse(t.started_at)) / 1000;
  assert(Math.abs(t.metrics.predict_time - predict) < 0.01, `predict_time ${t.metrics.predict_time} vs ${predict}`);
  const m = await replicate.models.get(...dest.split("/"));
  assert(m.latest_version && t.output.version === `${dest}:${m.latest_version.id}`, "destination's latest_version is the new version");
});

await check("predictions.get answers for a training id", async () => {
  const p = await replicate.predictions.get(trained.id);
  assert(p.id === trained.id && p.status === "succeeded", `${p.id} ${p.status}`);
});

await check("trainings.cancel cancels a queued training", async () => {
  const t = await replicate.trainings.create(FLUX_TRAINER.owner, FLUX_TRAINER.name, trainerVersion, {
    destination: dest,
    input: { input_images: "https://example.com/data.zip" },
    webhook: `${hookBase}?job=canceled`,
    webhook_events_filter: ["completed"],
  });
  canceled = await replicate.trainings.cancel(t.id);
  assert(canceled.id === t.id && canceled.status === "canceled" && canceled.completed_at, JSON.stringify(canceled));
  const again = await replicate.trainings.cancel(t.id);
  assert(again.status === "canceled", "cancel of a canceled training leaves it canceled");
});

await check("trainings.list and paginate follow absolute next links", async () => {
  const first = await replicate.trainings.list();
  assert(Array.isArray(first.results) && first.results.length >= 2, "results");
  assert(first.results[0].id === canceled.id, "newest first");
  assert(first.previous === null, "first page has no previous");
  for (let i = 0; i < 101; i++) {
    await replicate.trainings.create(FLUX_TRAINER.owner, FLUX_TRAINER.name, trainerVersion, { destination: dest, input: { steps: 1 } });
  }
  const ids = new Set();
  let pages = 0;
  for await (const page of replicate.paginate(() => replicate.trainings.list())) {
    pages++;
    for (const t of page) {
      assert(!ids.has(t.id), `duplicate ${t.id}`);
      ids.add(t.id);
    }
  }
  assert(pages >= 2 && ids.size >= 103 && ids.has(trained.id) && ids.has(canceled.id), `${pages} pages, ${ids.size} trainings`);
  const page1 = await replicate.trainings.list();
  assert(/^http:\/\/.+\/v1\/trainings\?cursor=/.test(page1.next), `next ${page1.next}`);
});

await check("webhook deliveries pass validateWebhook, honour the filter and retry the terminal one", async () => {
  const got = await until("the completed webhook to be delivered after a 500", async () => {
    const ds = deliveriesFor(trained.id);
    const done = ds.filter((d) => JSON.parse(d.body).status === "succeeded");
    return done.length >= 2 ? ds : null;
  });
  for (const d of got) {
    const ok = await validateWebhook({ headers: d.headers, body: d.body }, secret);
    assert(ok === true, `delivery ${d.headers["webhook-id"]} does not validate`);
    const ok2 = await validateWebhook({
      id: d.headers["webhook-id"],
      timestamp: d.headers["webhook-timestamp"],
      signature: d.headers["webhook-signature"],
      body: d.body,
      secret,
    });
    assert(ok2 === true, "validates in the id/timestamp/signature form too");
    assert(d.query.job === "trained", "the webhook URL's query is kept");
  }
  const tampered = got[0];
  assert((await validateWebhook({ headers: tampered.headers, body: tampered.body.replace('"status"', '"Status"') }, secret)) === false, "a tampered body must not validate");
  const statuses = got.map((d) => JSON.parse(d.body).status);
  assert(statuses[0] === "processing", `first event status ${statuses[0]} (start)`);
  assert(statuses.filter((s) => s === "processing").length >= 2, "start plus at least one logs event");
  const done = got.filter((d) => JSON.parse(d.body).status === "succeeded");
  assert(done[0].answered === 500 && done[1].answered === 200, "completed answered 500 then 200");
  assert(done[0].headers["webhook-id"] === done[1].headers["webhook-id"], "a retry keeps its webhook-id");
  const ids = new Set(got.map((d) => d.headers["webhook-id"]));
  assert(ids.size === got.length - 1, "one webhook-id per message");
  let prev = "";
  for (const d of got.slice(0, -1)) {
    const logs = JSON.parse(d.body).logs;
    assert(logs.startsWith(prev), "logs only grow");
    prev = logs;
  }
});

await check("a canceled training sends one completed webhook with status canceled", async () => {
  const ds = await until("the canceled webhook", async () => {
    const ds = deliveriesFor(canceled.id);
    return ds.length ? ds : null;
  });
  assert(ds.length === 1, `${ds.length} deliveries; only completed was asked for`);
  const body = JSON.parse(ds[0].body);
  assert(body.status === "canceled" && body.webhook_events_filter.join() === "completed", ds[0].body);
  assert((await validateWebhook({ headers: ds[0].headers, body: ds[0].body }, secret)) === true, "validates");
});

receiver.close();
console.log(`conformance: ${passed} passed, ${failed} failed`);
process.exit(failed === 0 ? 0 : 1);
