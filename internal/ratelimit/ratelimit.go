// Package ratelimit paces calls to Replicate with one budget shared by every
// trainhook instance on a PostgreSQL database, so that together they stay
// under the account's rate limit. A single instance (or SQLite) needs none
// of this: replicate.TokenBucket paces in memory.
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// Shared is a replicate.Limiter whose state is one row of the rate_limits
// table: the generic cell rate algorithm, as replicate.TokenBucket, with
// the theoretical arrival time of the next request (tat) in the database.
// Each Wait reserves the next free slot with one atomic statement,
//
//	tat = greatest(tat, now) + interval,
//
// and then sleeps until its slot. The statement runs on the database's
// clock, so the instances' own clocks, which may disagree by seconds, play
// no part; the row lock the statement takes for its microseconds is what
// orders the instances. Reservations are interval apart, so the slots of
// all instances together are at most N in any window.
//
// A caller returns from Wait a little after its slot: the database's answer
// takes time to arrive, and a timer fires late. Two callers late by
// different amounts could put N+1 returns in one window, so interval is
// (Window+Margin)/N rather than Window/N: returns late by up to Margin more
// than each other still count at most N in any window. The default Margin,
// 1 s a minute, costs under 2% of the budget.
//
// A waiter whose context ends keeps its slot (the budget errs on the side
// of sending less), as replicate.TokenBucket's does. Every instance should
// be configured with the same budget: each spaces its own reservations.
type Shared struct {
	db       *pgxpool.Pool
	name     string
	interval time.Duration
	sleep    func(context.Context, time.Duration) error
}

// Options configure a Shared limiter.
type Options struct {
	// Name is the budget's row; limiters with the same name share it.
	// Default "replicate".
	Name string
	// PerWindow is how many calls all instances together may make in any
	// Window (at least 1).
	PerWindow int
	// Window defaults to a minute.
	Window time.Duration
	// Margin is the tolerance for callers returning late (see Shared).
	// Default Window/60.
	Margin time.Duration
}

// setupLock is the pg_advisory_xact_lock key for creating the table: two
// instances starting at once would otherwise race in CREATE TABLE IF NOT
// EXISTS, and one would fail.
const setupLock int64 = 0x747261696e686b02

// The table is not part of the store's migrations, which the SQLite store
// shares; only PostgreSQL deployments with several instances have it.
const createTable = `CREATE TABLE IF NOT EXISTS rate_limits (
	name text        NOT NULL PRIMARY KEY,
	tat  timestamptz NOT NULL -- theoretical arrival time: the next free slot is tat - interval
)`

// reserve takes the next slot and returns it with the database's now, in
// one statement. A new budget starts with a slot free now. If the update
// waits for another instance's row lock, now is from before the wait, so
// the caller sleeps a little longer than it must, never shorter.
const reserve = `WITH c AS (SELECT clock_timestamp() AS now)
INSERT INTO rate_limits AS r (name, tat)
SELECT $1, c.now + $2::interval FROM c
ON CONFLICT (name) DO UPDATE SET tat = greatest(r.tat, (SELECT now FROM c)) + $2::interval
RETURNING r.tat - $2::interval, (SELECT now FROM c)`

// tryReserve is reserve when the next slot is free now (tat, the slot after
// the last one granted, is not in the future), and nothing (no row)
// otherwise.
const tryReserve = `WITH c AS (SELECT clock_timestamp() AS now)
INSERT INTO rate_limits AS r (name, tat)
SELECT $1, c.now + $2::interval FROM c
ON CONFLICT (name) DO UPDATE SET tat = greatest(r.tat, (SELECT now FROM c)) + $2::interval
WHERE r.tat <= (SELECT now FROM c)
RETURNING true`

// New returns a limiter on db, creating the rate_limits table if needed.
// Give it the store's pool (postgres.Store.Pool).
func New(ctx context.Context, db *pgxpool.Pool, o Options) (*Shared, error) {
	if o.Name == "" {
		o.Name = "replicate"
	}
	if o.PerWindow < 1 {
		o.PerWindow = 1
	}
	if o.Window <= 0 {
		o.Window = time.Minute
	}
	if o.Margin <= 0 {
		o.Margin = o.Window / 60
	}
	if err := setup(ctx, db); err != nil {
		return nil, fmt.Errorf("shared rate limit: create the rate_limits table: %w", err)
	}
	return &Shared{
		db:       db,
		name:     o.Name,
		interval: (o.Window + o.Margin) / time.Duration(o.PerWindow),
		sleep:    sleepContext,
	}, nil
}

func setup(ctx context.Context, db *pgxpool.Pool) error {
	tx, err := db.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) // after Commit, a no-op
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", setupLock); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, createTable); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// Interval is the spacing of the slots.
func (l *Shared) Interval() time.Duration { return l.interval }

// Wait blocks until this caller's slot, or returns ctx's error. It fails if
// the database cannot be reached: a call to Replicate is then not sent.
func (l *Shared) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	var slot, now time.Time
	if err := l.db.QueryRow(ctx, reserve, l.name, l.interval).Scan(&slot, &now); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && errors.Is(err, ctxErr) {
			return ctxErr
		}
		return fmt.Errorf("shared rate limit %s: reserve a slot: %w", l.name, err)
	}
	return l.sleep(ctx, slot.Sub(now))
}

// TryWait takes a slot if one is free now, and reports whether it did; it
// reserves nothing otherwise, nor when the database cannot be reached.
func (l *Shared) TryWait(ctx context.Context) bool {
	var ok bool
	err := l.db.QueryRow(ctx, tryReserve, l.name, l.interval).Scan(&ok)
	return err == nil && ok
}

// sleepContext waits d or until ctx ends.
func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
