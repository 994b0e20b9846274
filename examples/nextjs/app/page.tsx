import { getDB, type ModelRow } from "@/lib/db";

export const dynamic = "force-dynamic";

export default function Home() {
  const rows = getDB().prepare(`SELECT * FROM models ORDER BY updated_at DESC LIMIT 50`).all() as ModelRow[];
  return (
    <main>
      <h1>Models</h1>
      <p>Start one with POST /api/train; trainhook tells this app when it is done.</p>
      <table>
        <thead>
          <tr><th>Model</th><th>Name</th><th>Status</th><th>Version</th></tr>
        </thead>
        <tbody>
          {rows.map((r) => (
            <tr key={r.id}>
              <td>{r.id}</td><td>{r.name}</td><td>{r.status}</td><td>{r.version ?? r.error ?? ""}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}
