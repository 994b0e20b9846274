// The app's own database: one row per model the app asked for, and the ids of
// the notifications it has already applied (so a retried one changes nothing).
import Database from "better-sqlite3";

export type ModelRow = {
  id: string; // the app's id, also sent to trainhook as metadata.app_model_id
  name: string;
  trainhook_id: string | null; // trainhook's model id, from POST /api/models
  status: string; // Starting until trainhook answers, then trainhook's status
  version: string | null; // the trained version, once Ready
  error: string | null;
  sequence: number; // the newest notification's sequence applied to this row
  created_at: string;
  updated_at: string;
};

let db: Database.Database | undefined;

export function getDb(): Database.Database {
  if (db) return db;
  db = new Database(process.env.DATABASE_PATH ?? "app.db");
  db.pragma("journal_mode = WAL");
  db.pragma("busy_timeout = 5000");
  db.exec(`
    CREATE TABLE IF NOT EXISTS models (
      id           TEXT PRIMARY KEY,
      name         TEXT NOT NULL,
      trainhook_id TEXT UNIQUE,
      status       TEXT NOT NULL,
      version      TEXT,
      error        TEXT,
      sequence     INTEGER NOT NULL DEFAULT 0,
      created_at   TEXT NOT NULL,
      updated_at   TEXT NOT NULL
    );
    CREATE TABLE IF NOT EXISTS notifications (
      webhook_id  TEXT PRIMARY KEY,
      type        TEXT NOT NULL,
      model_id    TEXT,
      received_at TEXT NOT NULL
    );
  `);
  return db;
}
