package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
)

// The timed phase's own connections: headers and body arrive intact, and a
// server that closes the connection after an answer gets a new one.
func TestWireConnRedials(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/p/x" || r.Header.Get("Webhook-Id") != "msg_1" ||
			r.Header.Get("Content-Type") != "application/json" || string(body) != `{"id":"1"}` {
			http.Error(w, "bad request: "+r.Method+" "+r.URL.Path+" "+string(body), http.StatusBadRequest)
			return
		}
		w.Header().Set("Connection", "close")
		io.WriteString(w, `{"outcome":"applied"}`)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	dial := dialer(u)
	c := &wireConn{host: hostPort(u), dial: func(ctx context.Context) (net.Conn, error) { return dial(ctx, "tcp", hostPort(u)) }}
	defer c.close()
	for i := range 3 {
		code, body, err := c.post(context.Background(), "/p/x", []string{"webhook-id", "msg_1"}, []byte(`{"id":"1"}`))
		if err != nil || code != 200 || string(body) != `{"outcome":"applied"}` {
			t.Fatalf("post %d: %d %q %v", i, code, body, err)
		}
	}
	if n := conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 requests answered with Connection: close, want 3", n)
	}
}
