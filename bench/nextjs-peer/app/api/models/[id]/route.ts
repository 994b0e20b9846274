import { statements } from "@/lib/db";

type Row = { id: string; training_id: string; name: string; status: string; output: string | null; error: string | null };

export async function GET(_request: Request, { params }: { params: Promise<{ id: string }> }) {
  const { id } = await params;
  const row = statements().get.get(id) as Row | undefined;
  if (!row) return Response.json({ error: "no such model" }, { status: 404 });
  return Response.json({ ...row, output: row.output === null ? null : JSON.parse(row.output) });
}
