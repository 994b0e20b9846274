// Package sqlite stores trainhook's records in one SQLite file: WAL journal,
// synchronous=FULL so an acknowledged webhook survives power loss, embedded
// numbered migrations. It implements store.Store.
//
// SQLite allows one writer at a time. Instead of letting writers contend for
// the file lock (and fail with SQLITE_BUSY), the Store keeps one dedicated
// write connection, so Write calls queue in Go, and a separate small pool of
// read-only connections, so reads see the last committed state and never wait
// for a write. A third connection checkpoints the WAL into the database file
// in the background, so commits only append to the WAL. PostgreSQL needs none
// of this: its store uses one pool and row locks.
package sqlite

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/mattn/go-sqlite3"

	"github.com/trainhook/trainhook/internal/store"
)

// Store is a store.Store on one SQLite file. Its methods are safe for
// concurrent use.
type Store struct {
	path string
	lock *os.File // held until Close: see acquire

	// The write side: one connection, taken out of its pool for good, and
	// a lock that Write holds while it uses it. Write runs BEGIN IMMEDIATE
	// and COMMIT on it itself rather than through sql.Tx: database/sql
	// watches a Tx's context with a goroutine per transaction and per
	// query, and those cost more than the single-row queries they watch.
	w         *sql.DB
	wc        *sql.Conn
	writeLock chan struct{} // holds one token while a Write runs
	closed    bool          // set by Close, under writeLock
	unsynced  bool          // the write connection runs synchronous=NORMAL (see writeUnsynced), under writeLock
	wstmts    [numWriteStmts]*sql.Stmt

	r      *sql.DB // read-only connections for the methods outside Write
	rstmts [numReadStmts]*sql.Stmt

	ck            *sql.DB               // the checkpointer's connection
	ckKick        chan struct{}         // a commit happened
	ckStop        chan struct{}         // closed by Close
	ckDone        chan struct{}         // closed when the checkpointer has stopped
	ckErr         atomic.Pointer[error] // the last checkpoint's error, nil if it worked
	ckLimit       time.Duration         // at most one checkpoint per ckLimit
	ckLimitFrames int                   // WAL frames past which a checkpoint completes under the write lock
	ckKeepBytes   int64                 // a WAL file larger than this is truncated once writes pause
	ckIdle        time.Duration         // how long writes must pause before that
	walPath       string
	ckRounds      atomic.Int64 // checkpoints run, for tests
	ckCompleted   atomic.Int64 // checkpoints completed under the write lock, for tests
	ckTruncated   atomic.Int64 // WAL truncations, for tests
}

var _ store.Store = (*Store)(nil)

// Option changes how Open opens the database.
type Option func(*options)

type options struct {
	busyTimeout     time.Duration
	readConns       int
	cacheKiB        int
	checkpointEvery time.Duration
	walLimitFrames  int
	walKeepBytes    int64
	walIdle         time.Duration
}

// WithBusyTimeout sets how long a connection waits for a lock another
// process holds (a backup, the sqlite3 shell) before failing. Default 5s.
func WithBusyTimeout(d time.Duration) Option {
	return func(o *options) { o.busyTimeout = d }
}

// WithReadConns sets the number of read connections. Default 4.
func WithReadConns(n int) Option {
	return func(o *options) { o.readConns = n }
}

// WithCacheSize sets the page cache of each connection in KiB. Default 16 MiB
// for the write connection and 8 MiB for each read connection.
func WithCacheSize(kib int) Option {
	return func(o *options) { o.cacheKiB = kib }
}

// Open opens, creating it if needed, the SQLite database file at path and
// brings its schema up to date. It fails if the file was migrated by a newer
// trainhook than this one.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{busyTimeout: 5 * time.Second, readConns: 4, checkpointEvery: 50 * time.Millisecond,
		walLimitFrames: walLimitFrames, walKeepBytes: walKeepBytes, walIdle: walIdle}
	for _, opt := range opts {
		opt(&o)
	}
	if o.readConns < 1 {
		o.readConns = 1
	}
	if path == "" || path == ":memory:" {
		return nil, fmt.Errorf("open SQLite database at %q: a file path is required", path)
	}
	s, err := open(ctx, path, o)
	if err != nil {
		return nil, fmt.Errorf("open SQLite database at %s: %w", path, explainOpenError(path, err))
	}
	return s, nil
}

func open(ctx context.Context, path string, o options) (_ *Store, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	s := &Store{path: path, writeLock: make(chan struct{}, 1), ckLimit: o.checkpointEvery, ckLimitFrames: o.walLimitFrames,
		ckKeepBytes: o.walKeepBytes, ckIdle: o.walIdle, walPath: abs + "-wal"}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.lock, err = acquire(abs); err != nil {
		return nil, err
	}

	wcache, rcache := 16<<10, 8<<10
	if o.cacheKiB > 0 {
		wcache, rcache = o.cacheKiB, o.cacheKiB
	}
	s.w = sql.OpenDB(connector{
		dsn: dsn(abs, o.busyTimeout, wcache,
			"_journal_mode=WAL", "_synchronous=FULL", "_foreign_keys=on"),
		driver: &sqlite3.SQLiteDriver{ConnectHook: func(c *sqlite3.SQLiteConn) error {
			// The writer never checkpoints after its own commits, nor
			// truncates the WAL file when it starts the WAL again: the
			// checkpointer does both (see checkpointer and truncateWAL).
			_, err := c.Exec("PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = -1", nil)
			return err
		}},
	})
	s.w.SetMaxOpenConns(1)
	if s.wc, err = connectWriter(ctx, s.w, o.busyTimeout); err != nil {
		return nil, fmt.Errorf("connect for writing: %w", err)
	}
	if err := s.checkPragmas(ctx); err != nil {
		return nil, err
	}
	if err := s.migrate(ctx); err != nil {
		return nil, err
	}

	// query_only: a bug that writes through a read connection fails loudly
	// instead of racing the write connection for the lock.
	s.r = sql.OpenDB(connector{
		dsn:    dsn(abs, o.busyTimeout, rcache, "_foreign_keys=on", "_query_only=on"),
		driver: &sqlite3.SQLiteDriver{},
	})
	s.r.SetMaxOpenConns(o.readConns)
	s.r.SetMaxIdleConns(o.readConns)
	s.r.SetConnMaxIdleTime(5 * time.Minute)
	if err := s.r.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("connect for reading: %w", err)
	}

	s.ck = sql.OpenDB(connector{
		dsn:    dsn(abs, o.busyTimeout, 1<<10, "_synchronous=FULL"),
		driver: &sqlite3.SQLiteDriver{},
	})
	s.ck.SetMaxOpenConns(1)
	if err := s.ck.PingContext(ctx); err != nil {
		return nil, fmt.Errorf("connect for checkpoints: %w", err)
	}
	s.ckKick, s.ckStop, s.ckDone = make(chan struct{}, 1), make(chan struct{}), make(chan struct{})
	go s.checkpointer()

	for i, q := range writeSQL {
		if s.wstmts[i], err = s.wc.PrepareContext(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare %q: %w", firstLine(q), err)
		}
	}
	for i, q := range readSQL {
		if s.rstmts[i], err = s.r.PrepareContext(ctx, q); err != nil {
			return nil, fmt.Errorf("prepare %q: %w", firstLine(q), err)
		}
	}
	return s, nil
}

// connectWriter opens the write connection. Turning a new file to WAL needs
// an exclusive lock, and when several processes open the same new file at
// once SQLite may report SQLITE_BUSY at once rather than wait (waiting could
// deadlock), so connecting is retried until the busy timeout has passed.
func connectWriter(ctx context.Context, db *sql.DB, busyTimeout time.Duration) (*sql.Conn, error) {
	deadline := time.Now().Add(busyTimeout)
	for pause := 5 * time.Millisecond; ; pause = min(2*pause, 200*time.Millisecond) {
		c, err := db.Conn(ctx)
		if err == nil || !isBusy(err) || time.Now().After(deadline) {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause):
		}
	}
}

// dsn builds a go-sqlite3 data source name. The path goes in a file: URI,
// escaped, so that '?', '#' and '%' in it stay part of the name.
func dsn(absPath string, busy time.Duration, cacheKiB int, params ...string) string {
	var b strings.Builder
	b.WriteString("file:")
	b.WriteString(strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(absPath))
	fmt.Fprintf(&b, "?_busy_timeout=%d&_cache_size=%d", busy.Milliseconds(), -cacheKiB)
	for _, p := range params {
		b.WriteByte('&')
		b.WriteString(p)
	}
	return b.String()
}

// connector opens go-sqlite3 connections without registering a driver name
// in database/sql's global registry.
type connector struct {
	dsn    string
	driver *sqlite3.SQLiteDriver
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.driver }

// checkPragmas confirms the durability settings took effect: SQLite ignores
// a journal_mode it cannot use rather than failing.
func (s *Store) checkPragmas(ctx context.Context) error {
	var mode string
	if err := s.wc.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("read journal_mode: %w", err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal_mode is %q, not wal (is the file on a network file system?)", mode)
	}
	var syncMode, fk int
	if err := s.wc.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&syncMode); err != nil {
		return fmt.Errorf("read synchronous: %w", err)
	}
	if syncMode != 2 {
		return fmt.Errorf("synchronous is %d, not 2 (FULL)", syncMode)
	}
	if err := s.wc.QueryRowContext(ctx, "PRAGMA foreign_keys").Scan(&fk); err != nil {
		return fmt.Errorf("read foreign_keys: %w", err)
	}
	if fk != 1 {
		return errors.New("foreign_keys is off")
	}
	return nil
}

// inTransaction reports whether the write connection is inside a
// transaction, as SQLite sees it.
func (s *Store) inTransaction() bool {
	in := true
	_ = s.wc.Raw(func(dc any) error {
		if c, ok := dc.(*sqlite3.SQLiteConn); ok {
			in = !c.AutoCommit()
		}
		return nil
	})
	return in
}

// explainOpenError adds what SQLite leaves out: which directory is missing.
func explainOpenError(path string, err error) error {
	var se sqlite3.Error
	if errors.As(err, &se) && se.Code == sqlite3.ErrCantOpen {
		dir := filepath.Dir(path)
		if fi, statErr := os.Stat(dir); statErr != nil {
			return fmt.Errorf("%w (directory %s: %v)", err, dir, statErr)
		} else if !fi.IsDir() {
			return fmt.Errorf("%w (%s is not a directory)", err, dir)
		}
	}
	return err
}

// walLimitFrames is the WAL size, in 4 KiB frames (1 GiB), past which the
// checkpointer makes the writer wait so that the WAL can start again from
// its beginning.
//
// A checkpoint that runs beside the writer copies frames into the database
// file but, while commits keep landing, never all of them, and only once
// all are copied can the next commit start the WAL again. Whenever writes
// pause for a moment, that happens by itself (the WAL then stays a few MiB);
// under writes without a pause, only a checkpoint that holds the writer
// back completes, and it costs the writer a fsync of the database file
// (10–20 ms on a shared disk, for the pages written since the last one).
// Paying that every 16 MiB, as the writer did when it checkpointed after
// its own commits, cost a tenth of the throughput and doubled p99 when
// deliveries came in random order (each writes ~9 scattered pages); once
// per GiB it is a pause every few seconds of such load.
const walLimitFrames = 1 << 18

// A WAL file that grew past walKeepBytes is truncated once writes have
// paused for walIdle. The writer must not do it: SQLite truncates at the
// first commit after the WAL starts again, and freeing the blocks of a large
// file takes a while (0.7 s for 700 MiB, measured on a disk mounted with
// discard), which every delivery in flight would wait for.
const (
	walKeepBytes = 64 << 20
	walIdle      = time.Second
)

// checkpointer copies committed pages from the WAL into the database file,
// off the write path: a commit only appends to the WAL, and the writer
// neither spends its time copying pages nor waits for the database file's
// fsync. A PASSIVE checkpoint never blocks the writer or readers; it copies
// what no reader still needs. Past walLimitFrames it completes the
// checkpoint under the write lock (completeCheckpoint).
func (s *Store) checkpointer() {
	defer close(s.ckDone)
	trim := false // the WAL is all in the database file, and its file is large
	for {
		var idle <-chan time.Time
		if trim {
			idle = time.After(s.ckIdle)
		}
		select {
		case <-s.ckStop:
			return
		case <-idle:
			var err error
			if trim, err = s.truncateWAL(); err != nil {
				err = fmt.Errorf("truncate the WAL: %w", err)
				s.ckErr.Store(&err)
			}
			continue
		case <-s.ckKick:
		}
		logFrames, done, err := s.checkpoint()
		if err == nil && logFrames >= s.ckLimitFrames && done == logFrames {
			err = s.completeCheckpoint()
		}
		trim = err == nil && done == logFrames && s.walFileBytes() > s.ckKeepBytes
		if err != nil {
			err = fmt.Errorf("checkpoint the WAL into the database file: %w", err)
			s.ckErr.Store(&err)
		} else {
			s.ckErr.Store(nil)
		}
		s.ckRounds.Add(1)
		// Let commits gather: one checkpoint copies many of them.
		select {
		case <-s.ckStop:
			return
		case <-time.After(s.ckLimit):
		}
	}
}

// checkpoint runs a PASSIVE checkpoint and returns the WAL's size in frames
// and how many of them are now in the database file.
func (s *Store) checkpoint() (logFrames, done int, err error) {
	var busy int
	err = s.ck.QueryRow("PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &logFrames, &done)
	return logFrames, done, err
}

// completeCheckpoint copies the last frames while no Write runs, so that
// the whole WAL is in the database file and the next Write starts it again
// from its beginning. A reader still on old frames keeps the WAL from
// starting again; a later round tries again.
func (s *Store) completeCheckpoint() error {
	// Most of what was committed meanwhile is copied first, beside the writer.
	if _, _, err := s.checkpoint(); err != nil {
		return err
	}
	select {
	case s.writeLock <- struct{}{}:
	case <-s.ckStop:
		return nil
	}
	defer func() { <-s.writeLock }()
	if s.closed {
		return nil
	}
	_, _, err := s.checkpoint()
	s.ckCompleted.Add(1)
	return err
}

// walFileBytes is the WAL file's size (0 if it cannot be read).
func (s *Store) walFileBytes() int64 {
	fi, err := os.Stat(s.walPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// truncateWAL copies what is left of the WAL into the database file and
// truncates the WAL file to nothing, holding the writer back meanwhile; it
// runs only after writes have paused. It reports whether it must be tried
// again (a reader still on old frames kept the WAL from being truncated).
func (s *Store) truncateWAL() (again bool, err error) {
	select {
	case s.writeLock <- struct{}{}:
	case <-s.ckStop:
		return false, nil
	}
	defer func() { <-s.writeLock }()
	if s.closed {
		return false, nil
	}
	var busy, logFrames, done int
	if err := s.ck.QueryRow("PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &done); err != nil {
		return false, err
	}
	if busy != 0 {
		return true, nil
	}
	s.ckTruncated.Add(1)
	return false, nil
}

// Ping checks that a read connection answers a query on the file, and that
// the last checkpoint worked (if it failed, the disk is likely full or failing).
func (s *Store) Ping(ctx context.Context) error {
	var n int
	if err := s.r.QueryRowContext(ctx, "SELECT count(*) FROM schema_migrations").Scan(&n); err != nil {
		return fmt.Errorf("ping SQLite database at %s: %w", s.path, err)
	}
	if err := s.ckErr.Load(); err != nil {
		return fmt.Errorf("ping SQLite database at %s: %w", s.path, *err)
	}
	return nil
}

// Close waits for a running Write to end, then closes the statements and
// connections. The last connection to close checkpoints the WAL into the
// database file. Later calls of Write fail.
func (s *Store) Close() error {
	s.writeLock <- struct{}{}
	if s.closed {
		<-s.writeLock
		return nil
	}
	s.closed = true
	<-s.writeLock
	if s.ckStop != nil {
		close(s.ckStop)
		<-s.ckDone
	}

	var errs []error
	for _, st := range s.rstmts {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	for _, st := range s.wstmts {
		if st != nil {
			errs = append(errs, st.Close())
		}
	}
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	if s.ck != nil {
		errs = append(errs, s.ck.Close())
	}
	if s.wc != nil {
		errs = append(errs, s.wc.Close())
	}
	if s.w != nil {
		errs = append(errs, s.w.Close())
	}
	if s.lock != nil {
		// Last: the connections are closed, so the next holder is alone.
		errs = append(errs, s.lock.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close SQLite database at %s: %w", s.path, err)
	}
	return nil
}

func firstLine(q string) string {
	q = strings.TrimSpace(q)
	if i := strings.IndexByte(q, '\n'); i >= 0 {
		q = q[:i]
	}
	return q
}
