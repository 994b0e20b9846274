//go:build !unix

package sqlite

import (
	"errors"
	"os"
)

var errLocked = errors.New("locked")

// lockFile does nothing where flock is missing: the file is not held
// exclusively there, and ReleaseLeases must not be used.
func lockFile(*os.File) error { return nil }
