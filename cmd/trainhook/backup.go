package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/store/sqlite"
)

// runBackup copies the SQLite database while the server runs, with SQLite's
// online backup API: copying the file with cp while the server writes can
// give a torn copy, and misses what is still in the WAL.
func runBackup(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	db := fs.String("database-url", "", "the server's SQLite database (overrides DATABASE_URL)")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, "Usage: trainhook backup [flags] PATH\n\nCopies the SQLite database named by DATABASE_URL to the new file PATH, while\nthe server runs. To restore, stop the server and put the copy in the\ndatabase's place (remove the old file's -wal and -shm files too).\nFor PostgreSQL use pg_dump.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(e.stderr, "backup: name the file to write, such as: trainhook backup /var/backups/trainhook.db")
		return 2
	}
	dbURL := *db
	if dbURL == "" {
		dbURL = e.getenv(config.EnvDatabaseURL)
	}
	// Only DATABASE_URL matters here, parsed as serve parses it. backup
	// listens nowhere: a loopback ADDR keeps the checks about serving
	// beyond loopback out of its way.
	cfg, err := config.Load(config.Override(func(string) string { return "" }, map[string]string{
		config.EnvDatabaseURL: dbURL, config.EnvAddr: "127.0.0.1:0",
	}))
	if err != nil {
		fmt.Fprintf(e.stderr, "backup: %v\n", err)
		return 2
	}
	if cfg.DBDriver != config.DriverSQLite {
		fmt.Fprintf(e.stderr, "backup: DATABASE_URL is a %s database; backup copies SQLite files. For PostgreSQL use pg_dump.\n", cfg.DBDriver)
		return 2
	}
	dest := fs.Arg(0)
	if err := sqlite.Backup(ctx, cfg.DBPath, dest); err != nil {
		fmt.Fprintf(e.stderr, "backup: %v\n", err)
		return 1
	}
	fmt.Fprintf(e.stdout, "backed up %s to %s\n", cfg.DBPath, dest)
	return 0
}
