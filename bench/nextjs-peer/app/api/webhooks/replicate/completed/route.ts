import { validateWebhook } from "replicate";
import { statements } from "@/lib/db";

const statuses: Record<string, string> = {
  starting: "Training",
  processing: "Training",
  succeeded: "Ready",
  failed: "Failed",
  canceled: "Canceled",
};

// Replicate's training webhook, checked the way the replicate client's README
// shows for Next.js: validateWebhook on a clone of the Request, then the body.
export async function POST(request: Request) {
  const secret = process.env.REPLICATE_WEBHOOK_SECRET;
  if (!secret) throw new Error("REPLICATE_WEBHOOK_SECRET is not set");
  let valid = false;
  try {
    valid = await validateWebhook(request.clone(), secret);
  } catch {
    // It throws on missing webhook-* headers or body: as unsigned.
  }
  if (!valid) return Response.json({ detail: "Webhook is invalid" }, { status: 401 });

  const training = await request.json();
  const status = statuses[training.status];
  if (!status) return Response.json({ detail: `unknown status ${training.status}` }, { status: 400 });
  statements().update.run(
    status,
    training.output == null ? null : JSON.stringify(training.output),
    training.error == null ? null : typeof training.error === "string" ? training.error : JSON.stringify(training.error),
    training.id,
  );
  return Response.json({ detail: "ok" });
}
