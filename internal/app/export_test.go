package app

import (
	"testing"
	"time"
)

// SetNotFoundGrace shortens, for one test, how long a training Replicate
// answers 404 for is checked before its model fails.
func SetNotFoundGrace(t testing.TB, d time.Duration) {
	old := notFoundGrace
	notFoundGrace = d
	t.Cleanup(func() { notFoundGrace = old })
}
