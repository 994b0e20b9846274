package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mattn/go-sqlite3"
)

// ErrNoDatabase is returned (wrapped) by Check when there is no file at the
// path: trainhook serve creates it on its first start.
var ErrNoDatabase = errors.New("no database file")

// Check opens the SQLite file at path read-only, never creating or migrating
// it, and reports the schema version applied to it and the newest version
// this binary knows (applied < latest: serve will migrate it at start;
// applied > latest: a newer trainhook migrated it). A file without
// schema_migrations reports 0. It is for `trainhook doctor`, which must not
// change what it inspects, even while a server has the file open.
func Check(ctx context.Context, path string) (applied, latest int, err error) {
	if migrationsErr != nil {
		return 0, 0, migrationsErr
	}
	latest = len(migrations)
	if path == "" || path == ":memory:" {
		return 0, latest, fmt.Errorf("check SQLite database at %q: a file path is required", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return 0, latest, fmt.Errorf("check SQLite database at %s: %w", path, err)
	}
	// SQLite's own message for a missing file in read-only mode is only
	// "unable to open database file"; say which.
	fi, err := os.Stat(abs)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return 0, latest, fmt.Errorf("check SQLite database at %s: %w (%s does not exist)", path, ErrNoDatabase, abs)
	case err != nil:
		return 0, latest, fmt.Errorf("check SQLite database at %s: %w", path, err)
	case fi.IsDir():
		return 0, latest, fmt.Errorf("check SQLite database at %s: %s is a directory, not a database file", path, abs)
	}

	// mode=ro is an SQLite URI parameter: the connection can neither write
	// nor create the file. A short busy timeout, since a check must not hang
	// behind a long write. Reading a WAL database read-only still creates
	// its -wal and -shm files when they are missing; they are missing only
	// when no process has the file open (the last one to close removes
	// them), so then the file is read as immutable, which needs neither.
	params := []string{"mode=ro"}
	if _, err := os.Stat(abs + "-wal"); errors.Is(err, fs.ErrNotExist) {
		params = append(params, "immutable=1")
	}
	db := sql.OpenDB(connector{dsn: dsn(abs, 2*time.Second, 1<<10, params...), driver: &sqlite3.SQLiteDriver{}})
	defer db.Close()
	db.SetMaxOpenConns(1)

	var tables int
	err = db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'").Scan(&tables)
	if err != nil {
		return 0, latest, fmt.Errorf("check SQLite database at %s: %w", path, explainOpenError(path, err))
	}
	if tables == 0 {
		return 0, latest, nil
	}
	applied, err = appliedVersion(ctx, db)
	if err != nil {
		return 0, latest, fmt.Errorf("check SQLite database at %s: %w", path, err)
	}
	return applied, latest, nil
}
