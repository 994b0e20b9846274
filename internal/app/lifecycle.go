package app

import "time"

// notFoundGrace overrides service.DefaultNotFoundGrace (0: the default);
// tests shorten it to see a model Replicate does not know fail in seconds.
var notFoundGrace time.Duration
