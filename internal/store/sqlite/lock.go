package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ErrInUse is returned by Open when another process has the database open.
var ErrInUse = errors.New("the database file is in use by another trainhook process")

// A Store holds its file exclusively, by an advisory lock on a sidecar file
// (path + ".lock") that it keeps until Close. Two servers on one SQLite file
// would both poll, both recover starts and wait on each other's write lock;
// and with the file to itself, a Store knows that every lease in it (a
// start being created, a training being checked) was taken by a process
// that is gone: see ReleaseLeases. Read-only tools (sqlite.Check, the
// sqlite3 shell, backups) do not take the lock.
//
// The lock file is never deleted: removing it could let a third process
// lock a new file while a second still holds the old one.
func lockPath(path string) string { return path + ".lock" }

// holder describes the process that holds the lock, as it wrote it into
// the lock file; "" if unknown.
func holder(f *os.File) string {
	b := make([]byte, 512)
	n, _ := f.ReadAt(b, 0)
	return strings.TrimSpace(string(b[:n]))
}

// acquire takes the lock on path's lock file, or returns ErrInUse naming
// the other process.
func acquire(path string) (*os.File, error) {
	lp := lockPath(path)
	f, err := os.OpenFile(lp, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file %s: %w", lp, err)
	}
	if err := lockFile(f); err != nil {
		who := holder(f)
		f.Close()
		if errors.Is(err, errLocked) {
			if who == "" {
				who = "another process"
			}
			return nil, fmt.Errorf("%w: %s holds %s; one trainhook server at a time may use a SQLite file: stop the other one, or give this one its own DATABASE_URL (use PostgreSQL to run several instances)", ErrInUse, who, lp)
		}
		return nil, fmt.Errorf("lock %s: %w", lp, err)
	}
	host, _ := os.Hostname()
	who := fmt.Sprintf("trainhook pid %d on %s, since %s", os.Getpid(), host, time.Now().UTC().Format(time.RFC3339))
	// Best effort: the lock itself is what keeps others out.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(who+"\n"), 0)
	}
	return f, nil
}

// ReleaseLeases makes due now the leases a previous process left in the
// file: starts in doubt (Pending, no training id yet), whose lease would
// otherwise hold their recovery back for minutes, and checks claimed within
// claimLease of now. Open holds the file exclusively, so no lease in it
// belongs to a live process: call this once after Open, before polling.
// Scheduled checks further ahead than claimLease are left alone. It returns
// how many models it made due.
func (s *Store) ReleaseLeases(ctx context.Context, now time.Time, claimLease time.Duration) (int64, error) {
	var e encoder
	at, until := e.time("now", now), e.time("lease end", now.Add(claimLease))
	if e.err != nil {
		return 0, e.err
	}
	select {
	case s.writeLock <- struct{}{}:
	case <-ctx.Done():
		return 0, fmt.Errorf("release leases: %w", ctx.Err())
	}
	defer func() { <-s.writeLock }()
	if s.closed {
		return 0, fmt.Errorf("release leases in %s: store is closed", s.path)
	}
	res, err := s.wc.ExecContext(ctx, `UPDATE models SET next_check_at = ?, version = version + 1
WHERE next_check_at IS NOT NULL AND status <> 'Ready' AND status <> 'Failed' AND status <> 'Canceled'
  AND next_check_at > ? AND (training_id = '' OR next_check_at <= ?)`, at, at, until)
	if err != nil {
		return 0, fmt.Errorf("release leases in %s: %w", s.path, err)
	}
	return res.RowsAffected()
}
