package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/trainhook/trainhook/internal/app"
	"github.com/trainhook/trainhook/internal/config"
)

func runServe(ctx context.Context, args []string, e env) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	addr := fs.String("addr", "", "listen address host:port (overrides ADDR and PORT)")
	db := fs.String("database-url", "", "database: a SQLite file path (overrides DATABASE_URL)")
	appURL := fs.String("app-url", "", "public base URL Replicate posts webhooks to (overrides APP_URL)")
	webhooks := fs.String("webhooks", "", "auto, on or off (overrides TRAINHOOK_WEBHOOKS)")
	fs.Usage = func() {
		fmt.Fprint(e.stderr, "Usage: trainhook serve [flags]\n\nRuns the webhook receiver, the management API and the poller.\n\n"+serveSecurityHelp+"\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(e.stderr, "\nEnvironment:\n")
		_ = config.WriteHelp(e.stderr)
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "serve: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	set := map[string]string{}
	flagEnv := map[string]*string{"ADDR": addr, "DATABASE_URL": db, "APP_URL": appURL, "TRAINHOOK_WEBHOOKS": webhooks}
	fs.Visit(func(f *flag.Flag) {
		name := map[string]string{"addr": "ADDR", "database-url": "DATABASE_URL", "app-url": "APP_URL", "webhooks": "TRAINHOOK_WEBHOOKS"}[f.Name]
		set[name] = *flagEnv[name]
		if name == "ADDR" {
			set["PORT"] = "" // an explicit --addr wins over PORT
		}
	})
	cfg, err := config.Load(config.Override(e.getenv, set))
	if err != nil {
		fmt.Fprintf(e.stderr, "trainhook: invalid configuration:\n%v\n", err)
		return 2
	}
	log, flushLog := app.NewLogger(cfg, e.stdout)
	defer flushLog()
	a, err := app.Start(ctx, cfg, log)
	if err != nil {
		log.Error("cannot start", "err", err)
		fmt.Fprintf(e.stderr, "trainhook: %v\n", err)
		return 1
	}
	if err := a.Run(ctx); err != nil {
		log.Error("server stopped with an error", "err", err)
		return 1
	}
	return 0
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
