import { statements } from "@/lib/db";

export const dynamic = "force-dynamic";

// Ready once the database is open and its table exists.
export function GET() {
  statements().ping.get();
  return new Response("ok\n", { headers: { "Content-Type": "text/plain" } });
}
