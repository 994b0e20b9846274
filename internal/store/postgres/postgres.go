// Package postgres stores trainhook's records in PostgreSQL, so that several
// stateless trainhook instances can share one database. It implements
// store.Store with the same tables and meaning as the SQLite store, and
// passes the same conformance suite (storetest).
//
// Where SQLite has one writer, PostgreSQL has many: each Write is a READ
// COMMITTED transaction on a connection from one pool, and concurrent
// writers, in this process or another, meet on row locks. The conditional
// update (WHERE id = $1 AND version = $2) decides races between them;
// ClaimDue leases due models with FOR UPDATE SKIP LOCKED so each is polled
// by one instance at a time. No statement inside Write is allowed to fail
// on a value the caller chose (duplicate, missing model, stale version):
// PostgreSQL aborts the whole transaction on a failed statement, and the
// service's group commit puts up to 128 reports in one transaction.
//
// A batch of webhook deliveries takes two round trips, whatever its size.
// The service first gives the transaction the keys its reports will read
// (store.Prefetcher): Prefetch sends BEGIN and reads, in one round trip,
// the models those keys name, locking them (SELECT ... ORDER BY id FOR
// UPDATE, so that two instances lock in the same order), which of the
// webhook ids are claimed already, and ids for the deliveries the batch
// will add (taken ahead from the identity's sequence, so AddDelivery can
// return the id of a row not yet sent). Reads the prefetch covers are
// answered from it, kept up to date with the transaction's own writes; a
// read it does not cover goes to the server after the held writes, so it
// sees them. Writes whose outcome the locks decide in advance are held
// back and sent with the COMMIT: an update of a locked model at its
// version (an update at another version is ErrStale at once), its history
// row, the deliveries, and the claims of webhook ids the prefetch found
// unclaimed; rows of one kind go as one statement over arrays (unnest).
// A claim can still lose a race: another instance, having also found the
// id unclaimed, claims it first. So the held claims and updates are
// checked statements, which fail unless they change exactly their rows;
// the failure aborts the transaction on the server, the COMMIT behind it
// in the same round trip is skipped, and Write returns store.ErrRetry.
// Nothing of the batch is stored, and the service runs it again, when it
// finds the id claimed: a duplicate is never applied twice.
//
// It uses pgx's own interface and pool rather than database/sql: pgx
// prepares and caches each statement per connection by itself, speaks the
// binary protocol, sends several statements in one round trip (pgx.Batch),
// and its connections can LISTEN, which the pgnotify bridge needs.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trainhook/trainhook/internal/store"
)

// Store is a store.Store on a PostgreSQL database. Its methods are safe for
// concurrent use.
type Store struct {
	pool *pgxpool.Pool
	desc string // user@host:port/database, for messages; never the password
	o    options

	// roundTrips counts the round trips write transactions took, so that
	// tests can hold them to a bound.
	roundTrips atomic.Int64
}

var _ store.Store = (*Store)(nil)

// Option changes how Open connects and migrates.
type Option func(*options)

type options struct {
	migrationLockTimeout time.Duration
}

// WithMigrationLockTimeout bounds how long a migration's DDL waits for a
// table lock held by running queries (default 10s). Without a bound, a
// migration stuck behind one long query would queue every later query on
// that table behind itself, and stop all instances. The wait for another
// instance that is migrating is bounded only by ctx.
func WithMigrationLockTimeout(d time.Duration) Option {
	return func(o *options) { o.migrationLockTimeout = d }
}

// Settings each connection gets unless the URL sets them (as
// ?statement_timeout=5s or ?options=-c%20statement_timeout%3D5s).
var defaultRuntimeParams = map[string]string{
	"application_name": "trainhook",
	// No statement of ours takes more than milliseconds; one that runs for
	// 30s is stuck, and holding its locks longer would stall the others.
	"statement_timeout": "30s",
	// A row lock is held for one batch's transaction, milliseconds. Waiting
	// 10s means another instance is stuck: fail, and let the caller retry.
	"lock_timeout": "10s",
	// A transaction left open by a bug or a hung process would hold its row
	// locks and block vacuum; end it.
	"idle_in_transaction_session_timeout": "60s",
}

// Open connects to the PostgreSQL database at url (postgres:// or
// postgresql://, or key=value form; pool settings such as pool_max_conns
// may be added as URL parameters) and brings its schema up to date. It
// fails if the database was migrated by a newer trainhook than this one.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	o := options{migrationLockTimeout: 10 * time.Second}
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's message may quote the URL, password included.
		return nil, errors.New("open PostgreSQL database: the URL is not valid (percent-encode special characters in the password)")
	}
	desc := describe(cfg)
	s, err := open(ctx, cfg, desc, o)
	if err != nil {
		return nil, fmt.Errorf("open PostgreSQL database %s: %w", desc, err)
	}
	return s, nil
}

func open(ctx context.Context, cfg *pgxpool.Config, desc string, o options) (_ *Store, err error) {
	for k, v := range defaultRuntimeParams {
		if _, set := cfg.ConnConfig.RuntimeParams[k]; !set {
			cfg.ConnConfig.RuntimeParams[k] = v
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	s := &Store{pool: pool, desc: desc, o: o}
	defer func() {
		if err != nil {
			pool.Close()
		}
	}()
	if err := pool.Ping(ctx); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// describe names the database for messages and logs without the password.
func describe(cfg *pgxpool.Config) string {
	c := cfg.ConnConfig
	host := c.Host
	if len(host) > 0 && host[0] != '/' {
		host = net.JoinHostPort(host, strconv.Itoa(int(c.Port)))
	}
	return c.User + "@" + host + "/" + c.Database
}

// Pool is the store's connection pool, for the pieces that share the
// database but not the store's tables: the shared rate limiter and the
// LISTEN/NOTIFY bridge. Closing the store closes it.
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Ping checks that the database answers a query on the schema.
func (s *Store) Ping(ctx context.Context) error {
	var n int
	if err := s.pool.QueryRow(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		return fmt.Errorf("ping PostgreSQL database %s: %w", s.desc, err)
	}
	return nil
}

// Close waits for the pool's connections to be returned, then closes them.
// Later calls of Write fail.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}
