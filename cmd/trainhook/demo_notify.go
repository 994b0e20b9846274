package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
)

// demoApp stands in for the user's app in the demo: a loopback receiver of
// trainhook's notifications that verifies each, as an app would, and prints
// a line, so the quick start shows the last mile too.
type demoApp struct {
	url    string
	secret string
	srv    *http.Server
}

func startDemoApp(e env, start time.Time) (*demoApp, error) {
	raw := make([]byte, 32)
	_, _ = rand.Read(raw)
	key := replicate.NewKey(raw)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the demo app's notifications: %w", err)
	}
	keys := replicate.Keys{key}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			http.Error(w, "unreadable body", http.StatusBadRequest)
			return
		}
		if err := keys.Verify(r.Header, body, time.Now()); err != nil {
			fmt.Fprintf(e.stdout, "[%6s] app refused a notification: %v\n", time.Since(start).Round(100*time.Millisecond), err)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		var p struct {
			Type string
			Data struct{ Sequence int }
		}
		_ = json.Unmarshal(body, &p)
		fmt.Fprintf(e.stdout, "[%6s] app notified: %s #%d (webhook-id %s, signature verified)\n",
			time.Since(start).Round(100*time.Millisecond), p.Type, p.Data.Sequence, r.Header.Get(replicate.HeaderID))
		w.WriteHeader(http.StatusNoContent)
	})
	d := &demoApp{url: "http://" + ln.Addr().String() + "/api/trainhook", secret: key.Secret(),
		srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	go func() { _ = d.srv.Serve(ln) }()
	return d, nil
}

func (d *demoApp) Close() { _ = d.srv.Close() }
