// The app's own database: its model rows, kept true by trainhook's
// notifications. APP_DB names the SQLite file (default app.db).
import Database from "better-sqlite3";

export type ModelRow = {
  id: string; // trainhook's model id
  name: string;
  status: string; // Pending, Training, Ready, Failed, Canceled
  version: string | null; // the trained version, once Ready
  error: string | null;
  sequence: number; // the last notification applied (per model, increasing)
  updated_at: string;
};

let db: Database.Database | undefined;

export function getDB(): Database.Database {
  if (db) return db;
  db = new Database(process.env.APP_DB ?? "app.db");
  db.pragma("journal_mode = WAL");
  db.exec(`
    CREATE TABLE IF NOT EXISTS models (
      id         TEXT PRIMARY KEY,
      name       TEXT NOT NULL,
      status     TEXT NOT NULL,
      version    TEXT,
      error      TEXT,
      sequence   INTEGER NOT NULL DEFAULT 0,
      updated_at TEXT NOT NULL
    );
    -- webhook-ids applied: a retry or a resend of one changes nothing twice.
    CREATE TABLE IF NOT EXISTS notifications (
      webhook_id TEXT PRIMARY KEY,
      type       TEXT NOT NULL,
      model_id   TEXT NOT NULL,
      received_at TEXT NOT NULL
    );
  `);
  return db;
}
