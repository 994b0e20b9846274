package app

import (
	"context"
	"log/slog"
	"time"

	"github.com/trainhook/trainhook/internal/poller"
	"github.com/trainhook/trainhook/internal/store/sqlite"
)

// notFoundGrace overrides service.DefaultNotFoundGrace (0: the default);
// tests shorten it to see a model Replicate does not know fail in seconds.
var notFoundGrace time.Duration

// releaseLeases makes due at once what a process that died (a crash, a
// kill) had leased in the SQLite file: starts it was creating, which would
// otherwise wait out their 3-minute lease before being recovered, and
// trainings it was checking. This process holds the file exclusively, so
// those leases are nobody's. A failure only delays them until their lease
// runs out, so it is logged, not fatal.
func releaseLeases(ctx context.Context, s *sqlite.Store, log *slog.Logger) {
	n, err := s.ReleaseLeases(ctx, time.Now(), poller.DefaultLease)
	switch {
	case err != nil:
		log.Warn("could not release the leases a previous process left; they are checked when they run out", "err", err)
	case n > 0:
		log.Info("released the leases a previous process left: checking those models now", "models", n)
	}
}
