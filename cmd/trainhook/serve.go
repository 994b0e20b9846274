package main

import (
	"context"
	"fmt"
)

func runServe(_ context.Context, _ []string, e env) int {
	fmt.Fprintln(e.stderr, "serve: not built yet")
	return 1
}
