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
		fmt.Fprint(e.stderr, "Usage: trainhook serve [flags]\n\nRuns the webhook receiver, the management API and the poller.\n\nFlags:\n")
		fs.PrintDefaults()
		fmt.Fprint(e.stderr, "\nEnvironment:\n")
		_ = config.WriteHelp(e.stderr)
	}
	if err := parseQuiet(fs, args, e); err != nil {
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
