// POST /api/trainhook receives trainhook's notifications (Standard Webhooks):
// it verifies the signature over the raw body, then updates the app's own
// model row. A notification is retried until it gets a 2xx, with the same
// webhook-id, so the row is updated once per webhook-id.
import { NextResponse } from "next/server";
import { Webhook, WebhookVerificationError } from "standardwebhooks";
import { getDb } from "@/lib/db";
import type { TrainhookModel } from "@/lib/trainhook";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

type Notification = {
  type: string; // model.training, model.ready, model.failed or model.canceled
  timestamp: string;
  data: { model: TrainhookModel; sequence: number };
};

export async function POST(req: Request) {
  const secret = process.env.TRAINHOOK_NOTIFY_SECRET;
  if (!secret) {
    console.error("trainhook notification refused: TRAINHOOK_NOTIFY_SECRET is not set");
    return NextResponse.json({ error: "TRAINHOOK_NOTIFY_SECRET is not set" }, { status: 500 });
  }

  // The signature covers the exact bytes sent: read the body as text, never
  // parse and re-serialize it before verifying.
  const raw = await req.text();
  const webhookId = req.headers.get("webhook-id") ?? "";
  let event: Notification;
  try {
    event = new Webhook(secret).verify(raw, Object.fromEntries(req.headers)) as Notification;
  } catch (err) {
    const reason = err instanceof WebhookVerificationError ? err.message : String(err);
    console.error(`trainhook notification rejected: webhook-id=${webhookId} reason=${JSON.stringify(reason)}`);
    return NextResponse.json({ error: "invalid signature" }, { status: 400 });
  }

  const model = event.data?.model;
  if (!model?.id) {
    console.error(`trainhook notification rejected: webhook-id=${webhookId} reason="no data.model"`);
    return NextResponse.json({ error: "no data.model in the notification" }, { status: 400 });
  }

  const db = getDb();
  const apply = db.transaction(() => {
    const now = new Date().toISOString();
    const claimed = db
      .prepare("INSERT INTO notifications (webhook_id, type, model_id, received_at) VALUES (?, ?, ?, ?) ON CONFLICT DO NOTHING")
      .run(webhookId, event.type, model.id, now);
    if (claimed.changes === 0) return "duplicate";
    // Found by the app's own id (set before the training started), or by
    // trainhook's id. A sequence at or below the row's is older news.
    const updated = db
      .prepare(
        `UPDATE models SET status = ?, version = COALESCE(?, version), error = COALESCE(?, error),
           trainhook_id = ?, sequence = ?, updated_at = ?
         WHERE (id = ? OR trainhook_id = ?) AND sequence < ?`,
      )
      .run(
        model.status,
        model.output?.version ?? null,
        model.error ?? null,
        model.id,
        event.data.sequence,
        now,
        model.metadata?.app_model_id ?? "",
        model.id,
        event.data.sequence,
      );
    return updated.changes > 0 ? "applied" : "stale or unknown model";
  });
  const outcome = apply();

  console.log(
    `trainhook notification verified: webhook-id=${webhookId} type=${event.type} model=${model.id} ` +
      `status=${model.status} sequence=${event.data.sequence} outcome=${outcome}`,
  );
  return NextResponse.json({ outcome });
}
