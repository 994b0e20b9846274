// The app's models, as its own database has them (updated by notifications).
import { getDb, type ModelRow } from "@/lib/db";

export const dynamic = "force-dynamic";

export default function Home() {
  const rows = getDb().prepare("SELECT * FROM models ORDER BY created_at DESC LIMIT 50").all() as ModelRow[];
  return (
    <main>
      <h1>Models</h1>
      <p>
        Start one with <code>POST /api/models</code>; trainhook tells this app when it is done, at{" "}
        <code>/api/trainhook</code>.
      </p>
      <table>
        <thead>
          <tr><th>Name</th><th>Status</th><th>Version</th><th>Updated</th></tr>
        </thead>
        <tbody>
          {rows.map((m) => (
            <tr key={m.id}>
              <td>{m.name}</td>
              <td>{m.status}</td>
              <td><code>{m.version ?? m.error ?? ""}</code></td>
              <td>{m.updated_at}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </main>
  );
}
