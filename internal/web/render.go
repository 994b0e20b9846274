package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"html/template"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// pageNames are the page templates; each is parsed with the layout and the
// shared parts into its own set, so each may define "content".
var pageNames = []string{"models", "model", "start", "deliveries", "delivery", "notifications", "login", "error"}

type pages struct {
	sets map[string]*template.Template
}

func parsePages(a *assets) *pages {
	funcs := template.FuncMap{
		"asset":       a.url,
		"iso":         iso,
		"when":        when,
		"ago":         func(t time.Time) string { return ago(time.Since(t)) },
		"statusClass": func(s training.Status) string { return strings.ToLower(string(s)) },
		"statusIcon":  statusIcon,
		"percent":     func(p float64) string { return fmt.Sprintf("%.0f%%", p) },
		"field": func(name, label, value, err, hint, placeholder string, required bool) fieldView {
			return fieldView{name, label, value, err, hint, placeholder, required}
		},
	}
	base := template.Must(template.New("").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/parts.html"))
	p := &pages{sets: map[string]*template.Template{}}
	for _, name := range pageNames {
		set := template.Must(base.Clone())
		p.sets[name] = template.Must(set.ParseFS(templateFS, "templates/"+name+".html"))
	}
	return p
}

// fieldView is one text field of a form, with its message when wrong.
type fieldView struct {
	Name, Label, Value, Error, Hint, Placeholder string
	Required                                     bool
}

// view is what the layout needs; Data is the page's own.
type view struct {
	Title         string
	Page          string
	CSRF          string
	SignedIn      bool // show "Sign out"
	Config        *banner
	Instance      string // this server's event stream, for the script's reconnections
	Now           string // the server's clock, for the script's relative times
	ModelID       string // the model page's model, for live updates
	Notice        string
	NoticeIsError bool
	Data          any
}

// htmlHeaders sets what every HTML response carries: the dashboard's CSP
// (replacing the API's stricter default) and no caching of pages that show
// live state and CSRF tokens.
func htmlHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", csp)
	h.Set("Cache-Control", "no-store")
}

// render writes a whole page. It renders into a buffer first so a template
// error never sends half a page.
func (s *server) render(w http.ResponseWriter, r *http.Request, code int, page, title string, data any) error {
	return s.renderView(w, r, code, page, &view{Title: title, Data: data})
}

func (s *server) renderView(w http.ResponseWriter, r *http.Request, code int, page string, v *view) error {
	sess := sessionOf(r)
	v.Page = page
	v.Now = iso(s.now())
	v.CSRF = s.sessions.csrf(sess)
	v.SignedIn = s.sessions.required && sess.kind == kindSignedIn
	if s.sessions.authorized(sess, true) && sess != (session{}) {
		v.Config = s.banner()
		v.Instance = s.instance
	}
	return s.execute(w, code, page, "layout", v)
}

// fragment writes one named template of a page, for the script's live updates.
func (s *server) fragment(w http.ResponseWriter, page, name string, data any) error {
	return s.execute(w, http.StatusOK, page, name, data)
}

func (s *server) execute(w http.ResponseWriter, code int, page, name string, data any) error {
	var buf bytes.Buffer
	if err := s.pages.sets[page].ExecuteTemplate(&buf, name, data); err != nil {
		return fmt.Errorf("render %s/%s: %w", page, name, err)
	}
	htmlHeaders(w)
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, err := w.Write(buf.Bytes())
	return err
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// banner is the configuration shown on every page. It is decoded from the
// JSON of Deps.Status (app.Status) so this package need not import app.
type banner struct {
	Mode             string   `json:"mode"`
	ModeReason       string   `json:"mode_reason"`
	WebhookURL       string   `json:"webhook_url"`
	SigningKeys      []string `json:"signing_key_fingerprints"`
	ReplicateBaseURL string   `json:"replicate_base_url"`
	ReplicateToken   bool     `json:"replicate_token_set"`
	APIRateLimit     int      `json:"api_rate_limit_per_minute"`
	APICallsTotal    int64    `json:"api_calls_total"`
	PollInterval     string   `json:"poll_interval"`
	ReconcileAfter   string   `json:"reconcile_after"`
	WebhookEvents    []string `json:"webhook_events"`
	Database         string   `json:"database"`
	APITokenRequired bool     `json:"api_token_required"`
}

func (s *server) banner() *banner {
	if s.d.Status == nil {
		return nil
	}
	raw, err := json.Marshal(s.d.Status())
	var b banner
	if err == nil {
		err = json.Unmarshal(raw, &b)
	}
	if err != nil {
		s.log.Error("dashboard: cannot read the status for the banner", "err", err)
		return nil
	}
	return &b
}

// Webhook reports whether the banner is about webhook mode.
func (b *banner) Webhook() bool { return b.Mode == "webhook" }

func iso(t time.Time) string { return t.UTC().Format(time.RFC3339) }

func when(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") }

// ago says how long ago something was, roughly: "12 s ago", "3 min ago".
func ago(d time.Duration) string {
	if d < 0 {
		return "in " + span(-d)
	}
	if d < time.Second {
		return "just now"
	}
	return span(d) + " ago"
}

// span is a duration for people: "42 s", "3 min 12 s", "2 h 05 min", "3 days 4 h".
func span(d time.Duration) string {
	d = d.Round(time.Second)
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < 10*time.Minute:
		m, sec := int(d/time.Minute), int(d%time.Minute/time.Second)
		if sec == 0 {
			return fmt.Sprintf("%d min", m)
		}
		return fmt.Sprintf("%d min %d s", m, sec)
	case d < time.Hour:
		return fmt.Sprintf("%d min", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %02d min", int(d/time.Hour), int(d%time.Hour/time.Minute))
	}
	return fmt.Sprintf("%d days %d h", int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour))
}

func statusIcon(s training.Status) string {
	switch s {
	case training.Pending:
		return "○"
	case training.Training:
		return "◔"
	case training.Ready:
		return "✓"
	case training.Failed:
		return "✕"
	case training.Canceled:
		return "⊘"
	}
	return "?"
}

// assets are the embedded static files, served with a content hash in the
// URL so they can be cached for good.
type assets struct {
	files map[string]asset
}

type asset struct {
	body  []byte
	ctype string
	hash  string
}

func loadAssets() *assets {
	a := &assets{files: map[string]asset{}}
	entries, err := fs.ReadDir(staticFS, "static")
	if err != nil {
		panic(err)
	}
	for _, e := range entries {
		b, err := staticFS.ReadFile("static/" + e.Name())
		if err != nil {
			panic(err)
		}
		sum := sha256.Sum256(b)
		ct := mime.TypeByExtension(path.Ext(e.Name()))
		if ct == "" {
			ct = "application/octet-stream"
		}
		a.files[e.Name()] = asset{body: b, ctype: ct, hash: hex.EncodeToString(sum[:6])}
	}
	return a
}

// url is the versioned URL of a static file.
func (a *assets) url(name string) string {
	f, ok := a.files[name]
	if !ok {
		panic("web: no static file " + name)
	}
	return "/static/" + name + "?v=" + f.hash
}

func (a *assets) serve(w http.ResponseWriter, r *http.Request) {
	f, ok := a.files[r.PathValue("file")]
	if !ok {
		http.Error(w, "no such file", http.StatusNotFound)
		return
	}
	h := w.Header()
	h.Set("Content-Type", f.ctype)
	h.Set("X-Content-Type-Options", "nosniff")
	if r.URL.Query().Get("v") == f.hash {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	h.Set("ETag", `"`+f.hash+`"`)
	if r.Header.Get("If-None-Match") == `"`+f.hash+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	_, _ = w.Write(f.body)
}
