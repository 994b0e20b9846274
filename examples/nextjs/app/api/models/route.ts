// POST /api/models starts a LoRA training through trainhook and keeps the
// app's own row for it; GET /api/models lists the app's rows.
import { randomUUID } from "node:crypto";
import { NextResponse } from "next/server";
import { getDb, type ModelRow } from "@/lib/db";
import { startTraining } from "@/lib/trainhook";

export const runtime = "nodejs"; // better-sqlite3 is a native module
export const dynamic = "force-dynamic";

export async function GET() {
  const rows = getDb().prepare("SELECT * FROM models ORDER BY created_at DESC").all() as ModelRow[];
  return NextResponse.json({ models: rows });
}

export async function POST(req: Request) {
  const body = await req.json().catch(() => null);
  const name = typeof body?.name === "string" ? body.name.trim() : "";
  const images = typeof body?.input_images === "string" ? body.input_images : "";
  const triggerWord = typeof body?.trigger_word === "string" ? body.trigger_word : "TOK";
  if (!name || !images) {
    return NextResponse.json(
      { error: 'send {"name": "...", "input_images": "https://.../images.zip", "trigger_word": "..."}' },
      { status: 400 },
    );
  }
  const owner = process.env.REPLICATE_DESTINATION_OWNER;
  if (!owner) {
    return NextResponse.json(
      { error: "set REPLICATE_DESTINATION_OWNER to the Replicate account that owns the trained models" },
      { status: 500 },
    );
  }

  // The row exists before the training starts, so a notification that
  // arrives before trainhook's answer still finds it (by metadata.app_model_id).
  const db = getDb();
  const id = randomUUID();
  const now = new Date().toISOString();
  db.prepare(
    "INSERT INTO models (id, name, status, created_at, updated_at) VALUES (?, ?, 'Starting', ?, ?)",
  ).run(id, name, now, now);

  const slug = name.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 40) || "model";
  let model;
  try {
    model = await startTraining(
      {
        name,
        trainer: process.env.REPLICATE_TRAINER ?? "ostris/flux-dev-lora-trainer",
        destination: `${owner}/${slug}-${id.slice(0, 8)}`,
        input: { input_images: images, trigger_word: triggerWord, steps: 1000 },
        metadata: { app_model_id: id },
      },
      id,
    );
  } catch (err) {
    const message = err instanceof Error ? err.message : String(err);
    db.prepare("UPDATE models SET status = 'Failed', error = ?, updated_at = ? WHERE id = ?").run(
      `could not start: ${message}`,
      new Date().toISOString(),
      id,
    );
    return NextResponse.json({ error: message }, { status: 502 });
  }

  // Keep a status a notification may already have moved further.
  db.prepare(
    `UPDATE models SET trainhook_id = ?, error = COALESCE(error, ?), updated_at = ?,
       status = CASE WHEN sequence = 0 THEN ? ELSE status END
     WHERE id = ?`,
  ).run(model.id, model.error ?? null, new Date().toISOString(), model.status, id);
  const row = db.prepare("SELECT * FROM models WHERE id = ?").get(id) as ModelRow;
  return NextResponse.json(row, { status: 201 });
}
