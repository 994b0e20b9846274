package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Check connects to the database at url without migrating or changing it,
// and reports the schema version it has and the newest this binary knows.
// A database without trainhook's tables has version 0. It is what
// `trainhook doctor` uses.
func Check(ctx context.Context, url string) (applied, latest int, err error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return 0, 0, errors.New("the PostgreSQL URL is not valid (percent-encode special characters in the password)")
	}
	conn, err := pgx.ConnectConfig(ctx, cfg.ConnConfig)
	if err != nil {
		return 0, 0, fmt.Errorf("connect to PostgreSQL database %s: %w", describe(cfg), err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	applied, err = appliedVersion(ctx, conn)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table: never migrated
		return 0, len(migrations), nil
	}
	if err != nil {
		return 0, 0, err
	}
	return applied, len(migrations), nil
}
