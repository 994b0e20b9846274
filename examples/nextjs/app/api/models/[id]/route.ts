// GET /api/models/{id}: the app's own row, as its pages would read it.
import { getDB, type ModelRow } from "@/lib/db";

export const runtime = "nodejs";
export const dynamic = "force-dynamic";

export async function GET(_req: Request, ctx: { params: Promise<{ id: string }> }) {
  const { id } = await ctx.params;
  const row = getDB().prepare(`SELECT * FROM models WHERE id = ?`).get(id) as ModelRow | undefined;
  if (!row) return Response.json({ error: "no such model" }, { status: 404 });
  return Response.json(row);
}
