package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
)

func runNotify(ctx context.Context, args []string, e env) int {
	if len(args) > 0 {
		switch args[0] {
		case "new-secret":
			return runNotifyNewSecret(args[1:], e)
		case "listen":
			return runNotifyListen(ctx, args[1:], e)
		}
	}
	fmt.Fprint(e.stderr, `Usage: trainhook notify new-secret
       trainhook notify listen --addr 127.0.0.1:3000 --secret whsec_...

new-secret  prints a fresh key for TRAINHOOK_NOTIFY_SECRET
listen      runs a local receiver that verifies each notification and prints it
`)
	if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
		return exitOK
	}
	return exitUsage
}

func runNotifyNewSecret(args []string, e env) int {
	fs := newFlagSet("notify new-secret", e)
	fs.Usage = usageFunc(fs, e, "notify new-secret", `
Prints a new signing key (whsec_ and the base64 of 32 random bytes) for
TRAINHOOK_NOTIFY_SECRET. Give the same value to your app to verify the
notifications with.`)
	if _, code, ok := parseFlags(fs, args, e, 0, ""); !ok {
		return code
	}
	raw := make([]byte, 32)
	_, _ = rand.Read(raw) // never fails (crypto/rand panics instead)
	fmt.Fprintln(e.stdout, replicate.NewKey(raw).Secret())
	return exitOK
}

func runNotifyListen(ctx context.Context, args []string, e env) int {
	fs := newFlagSet("notify listen", e)
	addr := fs.String("addr", "127.0.0.1:3000", "`host:port` to listen on")
	secret := fs.String("secret", e.getenv("TRAINHOOK_NOTIFY_SECRET"), "the `whsec_` key(s) notifications are signed with (default $TRAINHOOK_NOTIFY_SECRET)")
	fs.Usage = usageFunc(fs, e, "notify listen [--addr 127.0.0.1:3000] [--secret whsec_...]", `
Runs a receiver for local development, as 'stripe listen' does: point
TRAINHOOK_NOTIFY_URL at http://ADDR/ and each notification is verified
(Standard Webhooks signature and timestamp) and printed, one JSON line per
event. A valid one is answered 204, an invalid one 401 with the reason.`)
	if _, code, ok := parseFlags(fs, args, e, 0, ""); !ok {
		return code
	}
	keys, err := replicate.ParseKeys(*secret)
	if err != nil || len(keys) == 0 {
		why := "no key given"
		if err != nil {
			why = err.Error()
		}
		fmt.Fprintf(e.stderr, "notify listen: --secret: want the whsec_ key trainhook signs with (TRAINHOOK_NOTIFY_SECRET; make one with `trainhook notify new-secret`): %s\n", why)
		return exitUsage
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintf(e.stderr, "notify listen: %v (choose another --addr)\n", err)
		return exitFailed
	}
	fmt.Fprintf(e.stderr, "Listening on http://%s/ for notifications (keys %v). Set TRAINHOOK_NOTIFY_URL=http://%s/ on the server.\n", ln.Addr(), keys.Fingerprints(), ln.Addr())
	srv := &http.Server{Handler: listenHandler(keys, e), ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		return exitOK
	case err := <-done:
		if errors.Is(err, http.ErrServerClosed) {
			return exitOK
		}
		fmt.Fprintf(e.stderr, "notify listen: %v\n", err)
		return exitFailed
	}
}

// listenHandler verifies each request and prints it as one JSON line.
func listenHandler(keys replicate.Keys, e env) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "notifications are POSTed", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		if err := keys.Verify(r.Header, body, time.Now()); err != nil {
			fmt.Fprintf(e.stderr, "refused a request from %s: %v\n", r.RemoteAddr, err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p struct {
			Type      string          `json:"type"`
			Timestamp string          `json:"timestamp"`
			Data      json.RawMessage `json:"data"`
		}
		if err := json.Unmarshal(body, &p); err != nil || p.Type == "" {
			http.Error(w, "signed, but not a notification payload", http.StatusBadRequest)
			return
		}
		line, _ := json.Marshal(map[string]any{"webhook_id": r.Header.Get(replicate.HeaderID), "type": p.Type, "timestamp": p.Timestamp, "data": p.Data})
		fmt.Fprintln(e.stdout, string(line))
		w.WriteHeader(http.StatusNoContent)
	})
}
