package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"

	"github.com/trainhook/trainhook/internal/store"
)

// Migrations are plain SQL files named NNNN_what.sql, numbered from 1 without
// gaps, in step with the SQLite store's: the same number makes the same
// change in both. A released file is never edited: a change is a new file.
//
//go:embed migrations/*.sql
var migrationFiles embed.FS

// migrations parses the embedded files once; a malformed set is a bug in
// this binary, caught by TestMigrationFiles.
var migrations, migrationsErr = store.LoadMigrations(migrationFiles)

// migrationLock is the pg_advisory_xact_lock key every trainhook instance
// takes to migrate: the first 8 bytes of "trainhk\x01".
const migrationLock int64 = 0x747261696e686b01

// migrate brings the schema up to date, one migration per transaction with
// its row in schema_migrations, so a crash leaves either all of one
// migration or none of it. Several instances starting at once are safe:
// each transaction first takes a transaction-scoped advisory lock, so they
// queue, and each reads the applied version only once it holds the lock.
// The lock is released by the commit, so a dead instance cannot keep it.
//
// The advisory lock waits as long as ctx allows (another instance may be
// running a long migration); the DDL itself waits at most the migration
// lock timeout for table locks, so that a migration stuck behind a long
// query fails instead of blocking every query queued behind it.
func (s *Store) migrate(ctx context.Context) error {
	if migrationsErr != nil {
		return migrationsErr
	}
	for {
		done, err := s.migrateOne(ctx)
		if err != nil {
			return err
		}
		if done {
			return nil
		}
	}
}

// migrateOne applies the next migration the database lacks, or reports
// done when there is none.
func (s *Store) migrateOne(ctx context.Context) (done bool, err error) {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // after Commit, a no-op
	// lock_timeout 0 here: wait for the other instance however long it takes.
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = 0"); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
		return false, fmt.Errorf("wait for the migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = "+strconv.FormatInt(s.o.migrationLockTimeout.Milliseconds(), 10)); err != nil {
		return false, err
	}
	if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
		version    integer     NOT NULL PRIMARY KEY,
		applied_at timestamptz NOT NULL DEFAULT now()
	)`); err != nil {
		return false, fmt.Errorf("create schema_migrations: %w", err)
	}
	applied, err := appliedVersion(ctx, tx)
	if err != nil {
		return false, err
	}
	if err := checkNotNewer(applied); err != nil {
		return false, err
	}
	if applied == len(migrations) {
		return true, tx.Commit(ctx)
	}
	m := migrations[applied]
	// Exec without arguments uses the simple protocol, which runs a file
	// of several statements.
	if _, err := tx.Exec(ctx, m.SQL); err != nil {
		return false, fmt.Errorf("apply migration %s: %w", m.Name, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version) VALUES ($1)", m.Version); err != nil {
		return false, fmt.Errorf("record migration %s: %w", m.Name, err)
	}
	if err := tx.Commit(ctx); err != nil {
		return false, fmt.Errorf("commit migration %s: %w", m.Name, err)
	}
	return false, nil
}

func appliedVersion(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (int, error) {
	var v int
	if err := q.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM schema_migrations").Scan(&v); err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return v, nil
}

var errNewerSchema = errors.New("database schema is newer than this trainhook")

func checkNotNewer(applied int) error {
	if applied > len(migrations) {
		return fmt.Errorf("%w: database schema version %d is newer than this trainhook knows (%d): it was migrated by a newer release; run that release or restore a backup", errNewerSchema, applied, len(migrations))
	}
	return nil
}

// Migrated reports the schema version the database has and the newest this
// binary knows.
func (s *Store) Migrated(ctx context.Context) (applied, latest int, err error) {
	applied, err = appliedVersion(ctx, s.pool)
	if err != nil {
		return 0, 0, err
	}
	return applied, len(migrations), nil
}
