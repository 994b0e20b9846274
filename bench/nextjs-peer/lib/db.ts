import Database from "better-sqlite3";

// One connection for the process, opened on first use (not at import time,
// which `next build` also does). better-sqlite3 is synchronous, so the
// process's requests take turns on it: each statement is its own transaction.
let db: Database.Database | undefined;
let stmts: ReturnType<typeof prepare> | undefined;

// The statements the routes run, prepared once.
function prepare(d: Database.Database) {
  return {
    ping: d.prepare("SELECT 1"),
    insert: d.prepare("INSERT INTO models (id, training_id, name, status) VALUES (?, ?, ?, 'Training')"),
    get: d.prepare("SELECT id, training_id, name, status, output, error FROM models WHERE id = ?"),
    update: d.prepare("UPDATE models SET status = ?, output = ?, error = ? WHERE training_id = ?"),
  };
}

export function statements() {
  if (!stmts) stmts = prepare(getDb());
  return stmts;
}

function getDb(): Database.Database {
  if (db) return db;
  const path = process.env.DATABASE_PATH;
  if (!path) throw new Error("DATABASE_PATH is not set: give the SQLite file to use, e.g. DATABASE_PATH=/tmp/peer.db");
  const sync = (process.env.PEER_SYNC ?? "full").toLowerCase();
  if (sync !== "full" && sync !== "normal") {
    throw new Error(`PEER_SYNC=${process.env.PEER_SYNC}: want full (durable: each commit on disk before the answer) or normal`);
  }
  const d = new Database(path);
  // WAL, as better-sqlite3's docs recommend for web apps. Its build makes
  // synchronous=NORMAL the WAL default: a commit is not yet on disk when the
  // statement returns. FULL syncs the WAL on every commit.
  d.pragma("journal_mode = WAL");
  d.pragma(`synchronous = ${sync.toUpperCase()}`);
  d.exec(`CREATE TABLE IF NOT EXISTS models (
    id TEXT PRIMARY KEY,
    training_id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    status TEXT NOT NULL,
    output TEXT,
    error TEXT
  )`);
  console.log(
    `peer: ${path}: journal_mode=${d.pragma("journal_mode", { simple: true })} synchronous=${d.pragma("synchronous", { simple: true })} (0 OFF, 1 NORMAL, 2 FULL)`,
  );
  db = d;
  return d;
}
