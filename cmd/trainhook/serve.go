package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/config"
)

// serveFlags are serve's flags, each overriding an environment variable.
var serveFlags = []struct{ name, env, usage string }{
	{"addr", "ADDR", "listen address host:port (overrides ADDR and PORT)"},
	{"database-url", "DATABASE_URL", "database: a SQLite file path, or a postgres:// URL for PostgreSQL (overrides DATABASE_URL)"},
	{"app-url", "APP_URL", "public base URL Replicate posts webhooks to (overrides APP_URL)"},
	{"webhooks", "TRAINHOOK_WEBHOOKS", "auto, on or off (overrides TRAINHOOK_WEBHOOKS)"},
}

func runServe(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("serve", e)
	vals := map[string]*string{}
	for _, f := range serveFlags {
		vals[f.name] = fs.String(f.name, "", f.usage)
	}
	flagsUsage := usageFunc(fs, e, "serve [flags]", "Runs the webhook receiver, the management API and the poller.\n\n"+serveSecurityHelp)
	fs.Usage = func() {
		flagsUsage()
		fmt.Fprint(e.stderr, "\nEnvironment:\n")
		_ = config.WriteHelp(e.stderr)
	}
	if _, code, ok := parseFlags(fs, args, e, 0, ""); !ok {
		return code
	}
	set := map[string]string{}
	fs.Visit(func(f *flag.Flag) {
		for _, sf := range serveFlags {
			if sf.name == f.Name {
				set[sf.env] = *vals[f.Name]
			}
		}
		if f.Name == "addr" {
			set["PORT"] = "" // an explicit --addr wins over PORT
		}
	})
	cfg, err := config.Load(config.Override(e.getenv, set))
	if err != nil {
		fmt.Fprintf(e.stderr, "trainhook: invalid configuration:\n%v\n", err)
		return exitUsage
	}
	log, flushLog := app.NewLogger(cfg, e.stdout)
	defer flushLog()
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		fmt.Fprintf(e.stderr, "trainhook: %v\n", err)
		return exitFailed
	}
	if err := a.Run(ctx); err != nil {
		log.Error("server stopped with an error", "err", err)
		return exitFailed
	}
	return exitOK
}

// serveSecurityHelp is what serve does by default to keep the API closed.
const serveSecurityHelp = `Secure by default:
  - Without TRAINHOOK_API_TOKEN, serve starts only on a loopback address
    (ADDR=127.0.0.1:8080); on any other address, PORT included, it refuses
    to start unless TRAINHOOK_INSECURE_OPEN_API=true. The token must be at
    least 32 characters: trainhook token new prints one.
  - It answers only to APP_URL's host, localhost, *.localhost, IP addresses
    and TRAINHOOK_ALLOWED_HOSTS (421 otherwise).
  - The API refuses state-changing requests from other sites' pages (403)
    and bodies that are not application/json (415); after 20 wrong tokens
    in a minute an address gets 429.
`
