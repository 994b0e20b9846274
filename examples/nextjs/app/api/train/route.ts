// POST /api/train {"name", "destination", "trainer"?, "input"}: starts a
// training through trainhook's API and keeps the model row in the app's own
// database. The app never polls: trainhook's notifications move the row on.
import { getDB } from "@/lib/db";

export const runtime = "nodejs";

export async function POST(req: Request) {
  const body = await req.json().catch(() => null);
  if (!body?.name || !body?.destination || !body?.input) {
    return Response.json({ error: 'send {"name", "destination", "input"} (and "trainer")' }, { status: 400 });
  }
  const base = process.env.TRAINHOOK_URL ?? "http://localhost:8080";
  const headers: Record<string, string> = { "Content-Type": "application/json" };
  if (process.env.TRAINHOOK_API_TOKEN) headers.Authorization = `Bearer ${process.env.TRAINHOOK_API_TOKEN}`;
  if (req.headers.get("idempotency-key")) headers["Idempotency-Key"] = req.headers.get("idempotency-key")!;
  const res = await fetch(`${base}/api/models`, {
    method: "POST",
    headers,
    body: JSON.stringify({
      name: body.name,
      trainer: body.trainer ?? "ostris/flux-dev-lora-trainer",
      destination: body.destination,
      input: body.input,
    }),
  });
  const answer = await res.json();
  if (!res.ok && res.status !== 202) {
    return Response.json({ error: answer.error ?? `trainhook answered ${res.status}` }, { status: 502 });
  }
  const model = answer.model ?? answer; // 422 carries {error, model}; 201/202 the model
  // A notification may already have come: never move a row back.
  getDB()
    .prepare(
      `INSERT INTO models (id, name, status, version, error, sequence, updated_at)
       VALUES (@id, @name, @status, NULL, NULL, 0, @now)
       ON CONFLICT (id) DO NOTHING`,
    )
    .run({ id: model.id, name: model.name, status: model.status, now: new Date().toISOString() });
  return Response.json({ id: model.id, status: model.status }, { status: 201 });
}
