package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
)

var testKey = replicate.NewKey([]byte("ingestref-test-key-24byt"))

// TestHandler runs the reference handler over loopback on a real SQLite
// file, in both sync modes: register, deliver signed, read back Ready with
// the output; a forged delivery changes nothing.
func TestHandler(t *testing.T) {
	for _, mode := range []string{"full", "normal"} {
		t.Run(mode, func(t *testing.T) {
			db, err := open(t.Context(), filepath.Join(t.TempDir(), "ref.db"), mode)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			var got string
			if err := db.QueryRow("PRAGMA synchronous").Scan(&got); err != nil {
				t.Fatal(err)
			}
			if want := map[string]string{"full": "2", "normal": "1"}[mode]; got != want {
				t.Fatalf("synchronous = %s, want %s", got, want)
			}
			srv := httptest.NewServer(handler(db, replicate.Keys{testKey}))
			defer srv.Close()

			resp := post(t, srv.URL+"/api/models", nil, `{"name":"m","training_id":"tr1"}`)
			if resp.StatusCode != http.StatusCreated {
				t.Fatalf("register: %d", resp.StatusCode)
			}
			var m struct{ ID string }
			json.NewDecoder(resp.Body).Decode(&m)

			body := `{"id":"tr1","status":"succeeded","output":{"version":"o/m:v1","weights":"https://example.com/w.tar"}}`
			forged := http.Header{}
			replicate.NewKey([]byte("another-key-of-24-bytes!")).SignRequest(forged, "msg_1", time.Now(), []byte(body))
			if resp := post(t, srv.URL+"/api/webhooks/replicate/completed", forged, body); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("forged delivery: %d, want 401", resp.StatusCode)
			}
			if s := get(t, srv.URL+"/api/models/"+m.ID); !strings.Contains(s, `"Pending"`) {
				t.Fatalf("after a forged delivery: %s", s)
			}
			h := http.Header{}
			testKey.SignRequest(h, "msg_1", time.Now(), []byte(body))
			if resp := post(t, srv.URL+"/api/webhooks/replicate/completed", h, body); resp.StatusCode != http.StatusOK {
				t.Fatalf("signed delivery: %d", resp.StatusCode)
			}
			s := get(t, srv.URL+"/api/models/"+m.ID)
			if !strings.Contains(s, `"Ready"`) || !strings.Contains(s, `"weights":"https://example.com/w.tar"`) {
				t.Fatalf("after the delivery: %s", s)
			}
			if s := get(t, srv.URL+"/readyz"); s != "" {
				t.Fatalf("readyz: %q", s)
			}
		})
	}
}

func TestRunRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--sync", "off", "--secret", testKey.Secret()},
		{"--secret", ""},
		{"--addr", "0.0.0.0:8090", "--secret", testKey.Secret()},
	} {
		if err := run(t.Context(), append(args, "--db", filepath.Join(t.TempDir(), "x.db"))); err == nil {
			t.Errorf("run %q: no error", args)
		}
	}
}

func post(t *testing.T, url string, h http.Header, body string) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
	for k, v := range h {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, resp.StatusCode, b)
	}
	return string(b)
}
