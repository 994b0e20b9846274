package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
)

const tokenUsage = `Usage: trainhook token new

Prints a new random API token (32 random bytes, 43 characters of base64url)
to set as TRAINHOOK_API_TOKEN on the server and the clients, for example:

  export TRAINHOOK_API_TOKEN=$(trainhook token new)
`

// runToken generates secrets; "new" is its only subcommand so far.
func runToken(_ context.Context, args []string, e env) int {
	if len(args) == 1 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
		fmt.Fprint(e.stderr, tokenUsage)
		return 0
	}
	if len(args) != 1 || args[0] != "new" {
		fmt.Fprint(e.stderr, tokenUsage)
		return 2
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		fmt.Fprintf(e.stderr, "token: read random bytes: %v\n", err)
		return 1
	}
	fmt.Fprintln(e.stdout, base64.RawURLEncoding.EncodeToString(b[:]))
	return 0
}
