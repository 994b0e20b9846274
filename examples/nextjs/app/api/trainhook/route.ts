// POST /api/trainhook: trainhook's notifications. Each is verified with the
// standardwebhooks package (signature over id.timestamp.body, 5-minute
// timestamp window), applied once per webhook-id, and only if it is newer
// than what the row holds (data.sequence increases per model).
import { Webhook } from "standardwebhooks";
import { getDB } from "@/lib/db";

export const runtime = "nodejs";

type Notification = {
  type: string;
  timestamp: string;
  data: {
    model: { id: string; name: string; status: string; error?: string; output?: { version?: string } };
    sequence: number;
  };
};

export async function POST(req: Request) {
  const secret = process.env.TRAINHOOK_NOTIFY_SECRET;
  if (!secret) return new Response("TRAINHOOK_NOTIFY_SECRET is not set", { status: 500 });
  const body = await req.text(); // the exact bytes that were signed
  let event: Notification;
  try {
    event = new Webhook(secret).verify(body, Object.fromEntries(req.headers)) as Notification;
  } catch (err) {
    return new Response(`refused: ${(err as Error).message}`, { status: 401 });
  }
  const id = req.headers.get("webhook-id")!;
  const m = event.data.model;
  const db = getDB();
  db.transaction(() => {
    const fresh = db
      .prepare(`INSERT INTO notifications (webhook_id, type, model_id, received_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING`)
      .run(id, event.type, m.id, new Date().toISOString()).changes;
    if (!fresh) return; // a retry or a resend: already applied
    db.prepare(
      `INSERT INTO models (id, name, status, version, error, sequence, updated_at)
       VALUES (@id, @name, @status, @version, @error, @sequence, @now)
       ON CONFLICT (id) DO UPDATE SET status = excluded.status, version = excluded.version,
         error = excluded.error, sequence = excluded.sequence, updated_at = excluded.updated_at
       WHERE excluded.sequence > models.sequence`,
    ).run({
      id: m.id,
      name: m.name,
      status: m.status,
      version: m.output?.version ?? null,
      error: m.error ?? null,
      sequence: event.data.sequence,
      now: new Date().toISOString(),
    });
  })();
  return new Response(null, { status: 204 });
}
