package sqlite

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Backup copies the database file at src to a new file dest with SQLite's
// online backup API, while a server may be writing to src. The copy is one
// consistent snapshot: in WAL mode a reader does not block the writer, so
// the whole copy is taken in one step (one read transaction) rather than in
// chunks that SQLite would restart whenever the writer commits. The copy is
// written beside dest, checked, synced and renamed into place, so dest is
// either absent or a complete database. An existing dest is refused.
func Backup(ctx context.Context, src, dest string) error {
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("back up %s: %w (DATABASE_URL must name the server's SQLite file)", src, err)
	}
	if _, err := os.Lstat(dest); err == nil {
		return fmt.Errorf("back up to %s: the file already exists; name a new file, or remove it first", dest)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("back up to %s: %w", dest, err)
	}
	absSrc, err := filepath.Abs(src)
	if err != nil {
		return fmt.Errorf("back up %s: %w", src, err)
	}
	absDest, err := filepath.Abs(dest)
	if err != nil {
		return fmt.Errorf("back up to %s: %w", dest, err)
	}
	if absSrc == absDest {
		return fmt.Errorf("back up to %s: that is the database itself; name another file", dest)
	}
	tmp := absDest + ".partial"
	_ = os.Remove(tmp) // a leftover of an interrupted backup
	if err := backupTo(ctx, absSrc, tmp); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := syncFile(tmp); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("back up to %s: sync the copy: %w", dest, err)
	}
	if err := os.Rename(tmp, absDest); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("back up to %s: %w", dest, err)
	}
	// The rename is durable once the directory is synced.
	if err := syncFile(filepath.Dir(absDest)); err != nil {
		return fmt.Errorf("back up to %s: sync its folder: %w", dest, err)
	}
	return nil
}

func backupTo(ctx context.Context, src, tmp string) error {
	drv := &sqlite3.SQLiteDriver{}
	sc, err := drv.Open(dsn(src, 5*time.Second, 2048, "mode=ro"))
	if err != nil {
		return fmt.Errorf("back up %s: open it: %w", src, explainOpenError(src, err))
	}
	defer sc.Close()
	dc, err := drv.Open(dsn(tmp, 5*time.Second, 2048))
	if err != nil {
		return fmt.Errorf("back up to %s: create the copy: %w", tmp, explainOpenError(tmp, err))
	}
	defer dc.Close()
	srcConn, destConn := sc.(*sqlite3.SQLiteConn), dc.(*sqlite3.SQLiteConn)

	b, err := destConn.Backup("main", srcConn, "main")
	if err != nil {
		return fmt.Errorf("back up %s: start: %w", src, err)
	}
	for {
		if err := ctx.Err(); err != nil {
			_ = b.Finish()
			return fmt.Errorf("back up %s: %w", src, err)
		}
		done, err := b.Step(-1)
		if err != nil {
			_ = b.Finish()
			return fmt.Errorf("back up %s: copy: %w", src, err)
		}
		if done {
			break
		}
		// Busy or locked (Step says neither done nor failed): a writer
		// outside WAL mode holds the file; try again until ctx ends.
		time.Sleep(50 * time.Millisecond)
	}
	if err := b.Finish(); err != nil {
		return fmt.Errorf("back up %s: finish: %w", src, err)
	}
	rows, err := destConn.Query("PRAGMA quick_check", nil)
	if err != nil {
		return fmt.Errorf("back up %s: check the copy: %w", src, err)
	}
	defer rows.Close()
	var res string
	vals := make([]driver.Value, 1)
	if err := rows.Next(vals); err != nil {
		return fmt.Errorf("back up %s: check the copy: %w", src, err)
	}
	if s, ok := vals[0].(string); ok {
		res = s
	}
	if res != "ok" {
		return fmt.Errorf("back up %s: the copy failed SQLite's quick_check: %v", src, vals[0])
	}
	return nil
}

func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
