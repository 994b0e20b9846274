import { randomUUID } from "node:crypto";
import { statements } from "@/lib/db";

// Registers a model for a training already started on Replicate.
export async function POST(request: Request) {
  let body: { name?: unknown; training_id?: unknown };
  try {
    body = await request.json();
  } catch {
    return Response.json({ error: "body must be JSON" }, { status: 400 });
  }
  if (typeof body.training_id !== "string" || body.training_id === "") {
    return Response.json({ error: "training_id is required" }, { status: 400 });
  }
  const name = typeof body.name === "string" ? body.name : body.training_id;
  const id = randomUUID();
  try {
    statements().insert.run(id, body.training_id, name);
  } catch (err) {
    if ((err as { code?: string }).code === "SQLITE_CONSTRAINT_UNIQUE") {
      return Response.json({ error: "a model already has this training_id" }, { status: 409 });
    }
    throw err;
  }
  return Response.json({ id, name, training_id: body.training_id, status: "Training" }, { status: 201 });
}
