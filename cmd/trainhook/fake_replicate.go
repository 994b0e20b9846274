package main

import (
	"context"
	"fmt"
)

// runFakeReplicate is a placeholder until the simulator lands.
func runFakeReplicate(_ context.Context, _ []string, e env) int {
	fmt.Fprintln(e.stderr, "fake-replicate: not built yet")
	return 1
}
