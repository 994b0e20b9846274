// Command ingestref is issue 2's point of comparison, not trainhook: the
// bare Go handler that verifies a Replicate webhook and does one SQLite
// UPDATE, with nothing else (no dedupe, audit, history or group commit). It
// answers the three requests ingestbench makes, so the two can be measured
// side by side with the same load generator:
//
//	go run ./cmd/ingestref --db /tmp/ref.db --sync full &
//	go run ./cmd/ingestbench --url http://127.0.0.1:8090 --secret whsec_...
//
// --sync full makes each UPDATE durable before the answer, as trainhook's
// deliveries are (one fsync per request); --sync normal does not (SQLite's
// WAL default for speed: a commit may be lost on power failure).
package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	_ "github.com/mattn/go-sqlite3"

	"github.com/trainhook/trainhook/internal/replicate"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "ingestref:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("ingestref", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8090", "listen address (loopback)")
	path := fs.String("db", "ingestref.db", "SQLite file, created if missing")
	syncMode := fs.String("sync", "full", "full: fsync every commit (durable); normal: do not")
	secret := fs.String("secret", os.Getenv("REPLICATE_WEBHOOK_SECRET"), "webhook signing key whsec_...")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *syncMode != "full" && *syncMode != "normal" {
		return fmt.Errorf("--sync is %q; want full or normal", *syncMode)
	}
	keys, err := replicate.ParseKeys(*secret)
	if err != nil || len(keys) == 0 {
		return fmt.Errorf("--secret: a whsec_ signing key is required (%v)", err)
	}
	host, _, err := net.SplitHostPort(*addr)
	if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("--addr %s: a loopback address is required", *addr)
	}
	db, err := open(ctx, *path, *syncMode)
	if err != nil {
		return err
	}
	defer db.Close()
	srv := &http.Server{Addr: *addr, Handler: handler(db, keys), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
	}()
	slog.Info("ingestref listening", "addr", *addr, "db", *path, "sync", *syncMode)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// open opens the SQLite file in WAL mode with the given synchronous setting
// and creates its one table.
func open(ctx context.Context, path, syncMode string) (*sql.DB, error) {
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL&_busy_timeout=5000&_synchronous="+syncMode)
	if err != nil {
		return nil, err
	}
	// One connection: SQLite has one writer at a time, and a pool of them
	// would only queue on the file lock with busy_timeout's sleeps.
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS models (
	id TEXT PRIMARY KEY, training_id TEXT NOT NULL UNIQUE, name TEXT NOT NULL,
	status TEXT NOT NULL, output TEXT)`); err != nil {
		db.Close()
		return nil, fmt.Errorf("create table in %s: %w", path, err)
	}
	return db, nil
}

var statuses = map[string]string{"starting": "Training", "processing": "Training",
	"succeeded": "Ready", "failed": "Failed", "canceled": "Canceled", "aborted": "Failed"}

func handler(db *sql.DB, keys replicate.Keys) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/webhooks/replicate/completed", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 10<<20))
		if err != nil {
			http.Error(w, "body: "+err.Error(), http.StatusRequestEntityTooLarge)
			return
		}
		if err := keys.Verify(r.Header, body, time.Now()); err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var t struct {
			ID     string          `json:"id"`
			Status string          `json:"status"`
			Output json.RawMessage `json:"output"`
		}
		if err := json.Unmarshal(body, &t); err != nil || t.ID == "" || statuses[t.Status] == "" {
			http.Error(w, "payload needs an id and a known status", http.StatusBadRequest)
			return
		}
		if _, err := db.ExecContext(r.Context(), `UPDATE models SET status = ?, output = ? WHERE training_id = ?`,
			statuses[t.Status], string(t.Output), t.ID); err != nil {
			http.Error(w, "update: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("POST /api/models", func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			Name       string `json:"name"`
			TrainingID string `json:"training_id"`
		}
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&m); err != nil || m.TrainingID == "" {
			http.Error(w, "want {name, training_id}", http.StatusBadRequest)
			return
		}
		raw := make([]byte, 10)
		rand.Read(raw)
		id := hex.EncodeToString(raw)
		if _, err := db.ExecContext(r.Context(), `INSERT INTO models (id, training_id, name, status) VALUES (?, ?, ?, 'Pending')`,
			id, m.TrainingID, m.Name); err != nil {
			http.Error(w, "insert: "+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"id": id})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := db.PingContext(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusOK)
	})
	mux.HandleFunc("GET /api/models/{id}", func(w http.ResponseWriter, r *http.Request) {
		var status string
		var output sql.NullString
		err := db.QueryRowContext(r.Context(), `SELECT status, output FROM models WHERE id = ?`, r.PathValue("id")).Scan(&status, &output)
		if errors.Is(err, sql.ErrNoRows) {
			http.Error(w, "no such model", http.StatusNotFound)
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"status": status, "output": json.RawMessage(orNull(output.String))})
	})
	return mux
}

// orNull is s, or JSON null for a model with no output yet.
func orNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}
