// A small client for trainhook's JSON API.

const baseUrl = () => (process.env.TRAINHOOK_URL ?? "http://127.0.0.1:8080").replace(/\/+$/, "");

function headers(idempotencyKey?: string): Record<string, string> {
  const h: Record<string, string> = { "Content-Type": "application/json" };
  if (process.env.TRAINHOOK_API_TOKEN) h.Authorization = `Bearer ${process.env.TRAINHOOK_API_TOKEN}`;
  // The same key on a retry returns the same model and never starts a second training.
  if (idempotencyKey) h["Idempotency-Key"] = idempotencyKey;
  return h;
}

// The model as trainhook shows it (GET /api/models/{id}), the fields the app uses.
export type TrainhookModel = {
  id: string;
  name: string;
  status: "Pending" | "Training" | "Ready" | "Failed" | "Canceled";
  output?: { version?: string; weights?: string };
  error?: string;
  metadata?: { app_model_id?: string };
};

export type StartRequest = {
  name: string;
  trainer: string; // owner/model[:version] on Replicate
  destination: string; // owner/name of the model the trained version goes to
  input: Record<string, unknown>;
  metadata: Record<string, unknown>;
};

// startTraining asks trainhook to start a training on Replicate and track it.
// 201: started; 202: Replicate could not be reached yet, trainhook retries;
// 422: Replicate refused (the model comes back Failed, with the reason).
export async function startTraining(req: StartRequest, idempotencyKey: string): Promise<TrainhookModel> {
  const res = await fetch(`${baseUrl()}/api/models`, {
    method: "POST",
    headers: headers(idempotencyKey),
    body: JSON.stringify(req),
    cache: "no-store",
  });
  const body = await res.json().catch(() => ({}));
  if (res.status === 422 && body.model) return body.model as TrainhookModel;
  if (!res.ok) {
    throw new Error(`trainhook answered ${res.status}: ${body.error ?? "no error message"}`);
  }
  return body as TrainhookModel;
}
