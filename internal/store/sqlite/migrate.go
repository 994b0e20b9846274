package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"strings"

	"github.com/trainhook/trainhook/internal/store"
)

// Migrations are plain SQL files named NNNN_what.sql, numbered from 1 without
// gaps. A released file is never edited: a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations parses the embedded files once; a malformed set is a bug in
// this binary, caught by TestMigrationFiles.
var migrations, migrationsErr = store.LoadMigrations(migrationFiles)

// migrate applies the migrations the file lacks, each in its own transaction
// with its row in schema_migrations, so a crash leaves either all of one
// migration or none of it. Two processes opening the same file at once are
// safe: BEGIN IMMEDIATE serialises them, and each re-checks inside.
func (s *Store) migrate(ctx context.Context) error {
	if migrationsErr != nil {
		return migrationsErr
	}
	if _, err := s.wc.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    INTEGER NOT NULL PRIMARY KEY,
		applied_at TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
	)`); err != nil {
		return fmt.Errorf("create schema_migrations: %w", err)
	}
	applied, err := appliedVersion(ctx, s.wc)
	if err != nil {
		return err
	}
	if err := checkNotNewer(applied); err != nil {
		return err
	}
	for _, m := range migrations[applied:] {
		if err := s.apply(ctx, m); err != nil {
			return fmt.Errorf("apply migration %s: %w", m.Name, err)
		}
	}
	return nil
}

// rebuildMarker is a line in a migration that rebuilds a table other tables
// refer to. SQLite's way to do that (its documentation's "other kinds of
// table schema changes") is to turn foreign keys off around the
// transaction, which a PRAGMA inside it cannot do, and to check them all
// before the commit.
const rebuildMarker = "-- migrate: rebuilds a table; foreign keys are checked before commit"

func (s *Store) apply(ctx context.Context, m store.Migration) (err error) {
	rebuild := strings.Contains(m.SQL, rebuildMarker)
	if rebuild {
		if _, err := s.wc.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
			return err
		}
		defer func() {
			_, onErr := s.wc.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON")
			if err == nil && onErr != nil {
				err = fmt.Errorf("turn foreign keys back on: %w", onErr)
			}
		}()
	}
	if _, err := s.wc.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			s.wc.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
		}
	}()
	var done int
	if err := s.wc.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations WHERE version = ?", m.Version).Scan(&done); err != nil {
		return err
	}
	if done == 0 { // else another process applied it meanwhile
		if _, err := s.wc.ExecContext(ctx, m.SQL); err != nil {
			return err
		}
		if rebuild {
			if err := foreignKeysHold(ctx, s.wc); err != nil {
				return err
			}
		}
		if _, err := s.wc.ExecContext(ctx, "INSERT INTO schema_migrations (version) VALUES (?)", m.Version); err != nil {
			return err
		}
	}
	_, err = s.wc.ExecContext(ctx, "COMMIT")
	return err
}

// foreignKeysHold fails if any row refers to a row that does not exist.
func foreignKeysHold(ctx context.Context, c *sql.Conn) error {
	var table, parent string
	var rowid sql.NullInt64
	var fkid int
	err := c.QueryRowContext(ctx, "PRAGMA foreign_key_check").Scan(&table, &rowid, &parent, &fkid)
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check foreign keys: %w", err)
	}
	return fmt.Errorf("row %d of %s refers to a missing row of %s", rowid.Int64, table, parent)
}

func appliedVersion(ctx context.Context, db interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int, error) {
	var v int
	if err := db.QueryRowContext(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

func checkNotNewer(applied int) error {
	if applied > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this trainhook knows (%d): it was migrated by a newer release; run that release or restore a backup", applied, len(migrations))
	}
	return nil
}

// Migrated reports the schema version the file has and the newest this
// binary knows.
func (s *Store) Migrated(ctx context.Context) (applied, latest int, err error) {
	applied, err = appliedVersion(ctx, s.r)
	if err != nil {
		return 0, 0, err
	}
	return applied, len(migrations), nil
}
