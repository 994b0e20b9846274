package web_test

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/trainhook/trainhook/internal/training"
)

const wantCSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"

func TestEveryPageRendersUnderTheCSP(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	m := s.register("portrait v1", "train-render")
	s.deliver(testKey, "msg_r1", payload("train-render", "processing"))
	s.deliver(testKey, "msg_r2", payload("train-render", "succeeded"))

	for _, path := range []string{"/", "/models/" + m.ID, "/deliveries", "/deliveries/1", "/models/new"} {
		t.Run(path, func(t *testing.T) {
			r := s.get(path)
			if r.code != 200 {
				t.Fatalf("%d\n%s", r.code, r.body)
			}
			if got := r.header.Get("Content-Security-Policy"); got != wantCSP {
				t.Errorf("CSP %q", got)
			}
			if ct := r.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			// Nothing inline: the CSP would block it, so it must not be there.
			for _, bad := range []*regexp.Regexp{regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]`), regexp.MustCompile(`<style`), regexp.MustCompile(`\sstyle=`), regexp.MustCompile(`\son[a-z]+=`), regexp.MustCompile(`(?i)https?://[^"]*\.(js|css)`)} {
				if loc := bad.FindStringIndex(r.body); loc != nil {
					t.Errorf("inline or remote asset: %q", r.body[loc[0]:min(loc[1]+40, len(r.body))])
				}
			}
			// The banner: mode, why, key fingerprint, never the key.
			r.has(t, "Polling mode", "APP_URL is not set", testKey.Fingerprint(), `data-events="/api/events"`)
			r.hasNot(t, testSecret, strings.TrimPrefix(testSecret, "whsec_"))
		})
	}
	t.Run("assets", func(t *testing.T) {
		r := s.get("/")
		for _, m := range regexp.MustCompile(`(?:src|href)="(/static/[^"]+)"`).FindAllStringSubmatch(r.body, -1) {
			a := s.get(strings.ReplaceAll(m[1], "&amp;", "&"))
			if a.code != 200 || !strings.Contains(a.header.Get("Cache-Control"), "immutable") || a.body == "" {
				t.Errorf("%s: %d %v", m[1], a.code, a.header)
			}
		}
		if r := s.get("/static/nope.js"); r.code != 404 {
			t.Errorf("missing asset: %d", r.code)
		}
	})
}

func TestModelsList(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	var ids []string
	for i := 0; i < 7; i++ {
		ids = append(ids, s.register(fmt.Sprintf("portrait %d", i), fmt.Sprintf("train-list-%d", i)).ID)
	}
	s.deliver(testKey, "msg_l1", payload("train-list-1", "processing"))
	s.deliver(testKey, "msg_l2", payload("train-list-2", "succeeded"))
	s.deliver(testKey, "msg_l3", payload("train-list-3", "failed"))
	s.deliver(testKey, "msg_l4", payload("train-list-4", "canceled"))

	t.Run("badges, progress and counts", func(t *testing.T) {
		r := s.get("/")
		r.has(t, ">All <span class=\"count\">7</span>", "Pending <span class=\"count\">3</span>", "Training <span class=\"count\">1</span>",
			"Ready <span class=\"count\">1</span>", "Failed <span class=\"count\">1</span>", "Canceled <span class=\"count\">1</span>",
			`<progress max="100" value="40"`, "40% · step 400 of 1000 · about 1", " s left</span>", "waiting to start", "running ",
			`class="badge badge-ready"><span aria-hidden="true">✓</span> Ready</span>`, `badge-failed"><span aria-hidden="true">✕</span> Failed`)
		// Newest first.
		if strings.Index(r.body, ids[6]) > strings.Index(r.body, ids[0]) {
			t.Error("not newest first")
		}
	})
	t.Run("status filter", func(t *testing.T) {
		r := s.get("/?status=ready")
		r.has(t, "portrait 2", "<h1>Ready models</h1>")
		r.hasNot(t, "portrait 1<", "portrait 3<")
		if got := strings.Count(r.body, "<tr data-model-id="); got != 1 {
			t.Errorf("%d rows", got)
		}
	})
	t.Run("search", func(t *testing.T) {
		r := s.get("/?q=PORTRAIT+5")
		if got := strings.Count(r.body, "<tr data-model-id="); got != 1 || !strings.Contains(r.body, ids[5]) {
			t.Errorf("%d rows", got)
		}
		s.get("/?q=nothing-like-it").has(t, "No models match this filter.")
	})
	t.Run("keyset pagination", func(t *testing.T) {
		var seen []string
		path := "/?limit=3"
		for page := 0; path != "" && page < 10; page++ {
			r := s.get(path)
			for _, m := range regexp.MustCompile(`<tr data-model-id="([^"]+)"`).FindAllStringSubmatch(r.body, -1) {
				seen = append(seen, m[1])
			}
			path = ""
			if m := regexp.MustCompile(`href="([^"]+)" rel="next"`).FindStringSubmatch(r.body); m != nil {
				path = strings.ReplaceAll(m[1], "&amp;", "&")
				if page == 0 && strings.Contains(r.body, "← Newest") {
					t.Error("first page links to itself")
				}
			}
		}
		want := []string{ids[6], ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}
		if strings.Join(seen, ",") != strings.Join(want, ",") {
			t.Fatalf("pages gave %v, want %v", seen, want)
		}
	})
	t.Run("fragments", func(t *testing.T) {
		r := s.get("/models/" + ids[1] + "?fragment=row")
		if r.code != 200 || !strings.HasPrefix(r.body, `<tr data-model-id="`+ids[1]+`" data-status="Training">`) || strings.Contains(r.body, "<html") {
			t.Fatalf("row fragment: %d %s", r.code, r.body)
		}
		r = s.get("/?status=training&fragment=rows")
		if r.code != 200 || strings.Count(r.body, "<tr data-model-id=") != 1 || !strings.Contains(r.body, ids[1]) || strings.Contains(r.body, "<table") {
			t.Fatalf("rows fragment: %d %s", r.code, r.body)
		}
		r = s.get("/?status=failed&fragment=counts")
		if r.code != 200 || !strings.HasPrefix(r.body, `<nav class="chips"`) || !strings.Contains(r.body, `href="/?status=Failed" aria-current="true"`) {
			t.Fatalf("counts fragment: %d %s", r.code, r.body)
		}
	})
	t.Run("bad input changes nothing", func(t *testing.T) {
		for _, c := range []struct {
			path string
			code int
			msg  string
		}{
			{"/?status=done", 400, "unknown status"},
			{"/?cursor=nope", 400, "cursor"},
			{"/?cursor=" + url.QueryEscape("bTE6eHh4"), 400, "cursor"},
			{"/?limit=0", 400, "limit must be"},
			{"/?limit=5000", 400, "limit must be"},
			{"/?q=" + strings.Repeat("x", 300), 400, "longer than 200"},
			{"/?fragment=nope", 400, "fragment"},
			{"/models/" + ids[0] + "?fragment=nope", 400, "fragment"},
			{"/models/nope", 404, "no model with id"},
			{"/models/" + strings.Repeat("z", 26), 404, "no model"},
			{"/nowhere", 404, "There is no page at /nowhere"},
			{"/deliveries/999", 404, "no delivery with id 999"},
			{"/deliveries/abc", 404, "no delivery"},
		} {
			r := s.get(c.path)
			if r.code != c.code || !strings.Contains(r.body, c.msg) {
				t.Errorf("%s: %d, want %d with %q\n%.600s", c.path, r.code, c.code, c.msg, r.body)
			}
			if r.header.Get("Content-Security-Policy") != wantCSP || !strings.Contains(r.body, "<h1>") {
				t.Errorf("%s: not an HTML page under the CSP", c.path)
			}
		}
		for _, c := range []struct{ method, path string }{{"PUT", "/"}, {"DELETE", "/models/" + ids[0]}, {"PATCH", "/deliveries"}} {
			r := s.do(s.client, c.method, c.path, nil, nil)
			if r.code != http.StatusMethodNotAllowed || r.header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: %d %v", c.method, c.path, r.code, r.header)
			}
		}
		r := s.get("/?limit=200")
		if got := strings.Count(r.body, "<tr data-model-id="); got != 7 {
			t.Fatalf("bad requests changed the models: %d", got)
		}
	})
}

func TestModelPage(t *testing.T) {
	t.Parallel()
	s := start(t, nil)
	ready := s.register("portrait ready", "train-ready")
	s.deliver(testKey, "msg_p1", payload("train-ready", "processing"))
	s.deliver(testKey, "msg_p2", payload("train-ready", "succeeded"))
	s.deliver(testKey, "msg_p3", payload("train-ready", "failed")) // conflicting outcome
	failed := s.register("portrait failed", "train-failed")
	s.deliver(testKey, "msg_f1", payload("train-failed", "failed"))
	waiting := s.register("portrait waiting", "train-waiting")

	t.Run("ready, with a flagged conflict", func(t *testing.T) {
		r := s.get("/models/" + ready.ID)
		r.has(t, "<h1>portrait ready</h1>", "Ready</span>",
			// Timeline with sources: API registration, webhooks with ids, the conflict.
			`<span class="src src-api">API</span>`, `<span class="src src-webhook">webhook <code>msg_p1</code></span>`,
			`<code>msg_p2</code>`, `<span class="flag">⚑ Conflict</span>`, "Conflicting outcomes", "kept Ready",
			// Output: the version as text, the weights as a link that is never fetched.
			"acme/portrait:81592a3e9edf0b50fd80f19c04f5a318b8b9244745ee95294822bc8a5ff27ed1",
			`<a class="wrap" href="https://replicate.delivery/xezq/abc/trained_model.tar" rel="noreferrer noopener nofollow">`,
			"Saving weights", `&#34;user&#34;: &#34;u1&#34;`, `href="/deliveries?model=`+ready.ID)
		r.hasNot(t, "Cancel training", "<img")
	})
	t.Run("failed shows the whole error, escaped", func(t *testing.T) {
		r := s.get("/models/" + failed.ID)
		r.has(t, "<h2 id=\"h-error\">Error</h2>", "CUDA out of memory. Tried to allocate 2.00 GiB &lt;script&gt;alert(1)&lt;/script&gt;")
		r.hasNot(t, "<script>alert(1)")
	})
	t.Run("waiting says why", func(t *testing.T) {
		r := s.get("/models/" + waiting.ID)
		r.has(t, "<strong>Waiting:</strong> Replicate has not reported the training as started; no news for ", "trainhook cannot check on it without REPLICATE_API_TOKEN", "Cancel training")
	})
	t.Run("live fragment", func(t *testing.T) {
		r := s.get("/models/" + waiting.ID + "?fragment=live")
		if r.code != 200 || strings.Contains(r.body, "<html") || !strings.Contains(r.body, `name="csrf" value="`) {
			t.Fatalf("%d %s", r.code, r.body)
		}
	})
	t.Run("notices come from a fixed list", func(t *testing.T) {
		s.get("/models/"+waiting.ID+"?notice=started").has(t, "The training was started on Replicate.")
		r := s.get("/models/" + waiting.ID + "?notice=" + url.QueryEscape("<b>you were hacked</b>"))
		r.hasNot(t, "hacked")
	})
	t.Run("cancel without Replicate explains", func(t *testing.T) {
		tok := s.csrf("/models/" + waiting.ID)
		r := s.post("/models/"+waiting.ID+"/cancel", url.Values{"csrf": {tok}})
		if r.code != http.StatusBadRequest || !strings.Contains(r.body, "The training was not canceled: this server cannot cancel trainings: set REPLICATE_API_TOKEN") {
			t.Fatalf("%d\n%s", r.code, r.body)
		}
		if d, _ := s.app.Service.Model(t.Context(), waiting.ID); d.Status != training.Pending {
			t.Fatal("model changed")
		}
	})
}
