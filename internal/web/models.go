package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// pageSize is how many rows a list page shows unless ?limit= says otherwise.
const (
	pageSize    = 50
	maxPageSize = 200
)

// modelRow is a model as the list and its live updates show it.
type modelRow struct {
	training.Model
	Now time.Time
}

// Active reports whether the training is in flight.
func (m modelRow) Active() bool { return !m.Status.Terminal() }

// Age is how long ago the model was created.
func (m modelRow) Age() string { return ago(m.Now.Sub(m.CreatedAt)) }

// Duration is how long the training ran (or has run so far), from its
// start at Replicate, or from creation while it has not started.
func (m modelRow) Duration() string {
	from := m.CreatedAt
	if m.StartedAt != nil {
		from = *m.StartedAt
	}
	switch {
	case m.Status.Terminal() && m.CompletedAt != nil:
		if m.StartedAt == nil {
			return "never started"
		}
		return span(m.CompletedAt.Sub(from))
	case m.Status.Terminal():
		return "—"
	case m.StartedAt == nil:
		return "queued " + span(m.Now.Sub(from))
	}
	return "running " + span(m.Now.Sub(from))
}

// DurationFrom is when the running clock of Duration started, for the
// script to keep it ticking; zero when it does not tick.
func (m modelRow) DurationFrom() string {
	if m.Status.Terminal() {
		return ""
	}
	if m.StartedAt != nil {
		return iso(*m.StartedAt)
	}
	return iso(m.CreatedAt)
}

// DurationPrefix is the word before a running Duration.
func (m modelRow) DurationPrefix() string {
	if m.StartedAt == nil {
		return "queued"
	}
	return "running"
}

// ProgressText is "40% · step 400 of 1000 · about 2 min left", or what
// stands for it.
func (m modelRow) ProgressText() string {
	p := m.Progress
	switch {
	case m.Status == training.Pending:
		return "waiting to start"
	case p.Percent == 0 && p.Total == 0:
		return "starting"
	}
	text := strconv.FormatFloat(p.Percent, 'f', 0, 64) + "%"
	if p.Total > 0 {
		text += " · step " + strconv.Itoa(p.Step) + " of " + strconv.Itoa(p.Total)
	}
	if left := training.TimeLeft(m.Model, m.Now); left != "" {
		text += " · " + left
	}
	return text
}

// modelsView is the list page.
type modelsView struct {
	Rows      []modelRow
	Filter    listFilter
	Counts    []statusCount
	Total     int
	NextURL   string // older models
	FirstURL  string // back to the newest, when not on the first page
	FirstPage bool
}

type listFilter struct {
	Status training.Status
	Query  string
	Limit  int
}

type statusCount struct {
	Status   training.Status
	Count    int
	URL      string
	Selected bool
}

func (s *server) modelsPage(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	f := store.ModelFilter{Query: strings.TrimSpace(q.Get("q"))}
	lf := listFilter{Query: f.Query, Limit: pageSize}
	if v := q.Get("status"); v != "" {
		st, err := training.ParseStatus(v)
		if err != nil {
			return invalid("status: %v", err)
		}
		f.Status, lf.Status = st, st
	}
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		return err
	}
	f.Limit, lf.Limit = limit, limit
	cursor := q.Get("cursor")
	if cursor != "" {
		id, ok := service.ParseModelCursor(cursor)
		if !ok {
			return invalid("cursor %q is not one this dashboard made; start again from the first page", clip(cursor, 40))
		}
		f.Before = id
	}
	frag := q.Get("fragment")
	if q.Has("fragment") && frag != "counts" && frag != "rows" {
		return invalid("fragment must be counts or rows")
	}
	v := modelsView{Filter: lf, FirstPage: cursor == ""}
	if frag != "rows" {
		counts, err := s.d.Store.CountModels(r.Context())
		if err != nil {
			return err
		}
		for _, st := range training.Statuses {
			v.Total += counts[st]
			v.Counts = append(v.Counts, statusCount{Status: st, Count: counts[st], URL: lf.url(st, ""), Selected: st == lf.Status})
		}
		if frag == "counts" {
			return s.fragment(w, "models", "counts", v)
		}
	}
	ms, next, err := s.d.Service.Models(r.Context(), f)
	if err != nil {
		return err
	}
	now := s.now()
	for _, m := range ms {
		v.Rows = append(v.Rows, modelRow{Model: m, Now: now})
	}
	if frag == "rows" {
		return s.fragment(w, "models", "rows", v)
	}
	if next != "" {
		v.NextURL = lf.url(lf.Status, service.ModelCursor(next))
	}
	if cursor != "" {
		v.FirstURL = lf.url(lf.Status, "")
	}
	title := "Models"
	if lf.Status != "" {
		title = string(lf.Status) + " models"
	}
	return s.render(w, r, http.StatusOK, "models", title, v)
}

// url is the list's URL with this filter, another status and a cursor.
func (f listFilter) url(st training.Status, cursor string) string {
	q := url.Values{}
	if st != "" {
		q.Set("status", string(st))
	}
	if f.Query != "" {
		q.Set("q", f.Query)
	}
	if f.Limit != pageSize {
		q.Set("limit", strconv.Itoa(f.Limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if len(q) == 0 {
		return "/"
	}
	return "/?" + q.Encode()
}

// AllURL is the list without a status filter.
func (f listFilter) AllURL() string { return f.url("", "") }

// ClearURL is the list without the name search.
func (f listFilter) ClearURL() string {
	f.Query = ""
	return f.url(f.Status, "")
}

func parseLimit(v string) (int, error) {
	if v == "" {
		return pageSize, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxPageSize {
		return 0, invalid("limit must be a whole number from 1 to %d, got %q", maxPageSize, clip(v, 20))
	}
	return n, nil
}

// modelView is the model page.
type modelView struct {
	modelRow
	History     []historyRow
	Output      *outputView
	Waiting     string
	Normal      bool // Waiting describes a training that runs as it should
	CanCancel   bool
	CancelNote  string
	Input       string
	Metadata    string
	WebhookMode bool
	CanRemove   bool
	CanRetry    bool
	RetryKey    string // idempotency key of the retry form: a double submit starts one training
}

type historyRow struct {
	training.HistoryEntry
}

// SourceText says where the report came from: "webhook msg_123", "poll", "API (cancel)".
func (h historyRow) SourceText() string {
	switch h.Source {
	case training.SourceWebhook:
		return "webhook"
	case training.SourcePoll:
		return "poll"
	case training.SourceAPI:
		return "API"
	}
	return string(h.Source)
}

// Conflict reports whether this entry is a flagged conflict, not a move.
func (h historyRow) Conflict() bool { return h.Decision == training.Conflict }

// First reports whether this is the model's first entry (no from status).
func (h historyRow) First() bool { return h.From == "" }

// outputView is a training's output: the new version and its weights.
type outputView struct {
	Version    string
	Weights    string
	WeightsURL string // set only for an http(s) URL; never fetched here
	Raw        string // the output as JSON when it has another shape
}

func parseOutput(raw json.RawMessage) *outputView {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	o := &outputView{}
	var known struct {
		Version string `json:"version"`
		Weights string `json:"weights"`
	}
	if json.Unmarshal(raw, &known) == nil && (known.Version != "" || known.Weights != "") {
		o.Version, o.Weights = known.Version, known.Weights
		if u, err := url.Parse(known.Weights); err == nil && (u.Scheme == "https" || u.Scheme == "http") && u.Host != "" {
			o.WeightsURL = u.String()
		}
		return o
	}
	o.Raw = pretty(raw)
	return o
}

func pretty(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if json.Indent(&b, raw, "", "  ") != nil {
		return string(raw)
	}
	return b.String()
}

// waiting says where a model in flight stands, from when it last changed
// and when it is next checked: "last news 3 s ago; next check in 2 s" for a
// training that runs as it should (normal is true), or why it has not
// moved: "the start has not been confirmed by Replicate yet; no news for
// 12 min; ...".
func waiting(m training.Model, now time.Time, webhookMode, canPoll bool) (text string, normal bool) {
	if m.Status.Terminal() {
		return "", false
	}
	normal = m.Status == training.Training && canPoll && m.CheckAttempts == 0 && m.NotFoundChecks == 0 &&
		(m.NextCheckAt == nil && webhookMode || m.NextCheckAt != nil && m.NextCheckAt.After(now.Add(-5*time.Second)))
	var parts []string
	switch {
	case m.Status == training.Pending && m.TrainingID == "":
		parts = append(parts, "the start has not been confirmed by Replicate yet")
	case m.Status == training.Pending:
		parts = append(parts, "Replicate has not reported the training as started")
	}
	if normal {
		parts = append(parts, "last news "+span(now.Sub(m.UpdatedAt))+" ago")
	} else {
		parts = append(parts, "no news for "+span(now.Sub(m.UpdatedAt)))
	}
	switch {
	case !canPoll:
		parts = append(parts, "trainhook cannot check on it without REPLICATE_API_TOKEN, so only a webhook can move it")
	case m.NextCheckAt == nil && webhookMode:
		parts = append(parts, "waiting for a webhook; no check is scheduled")
	case m.NextCheckAt == nil:
		parts = append(parts, "no check is scheduled")
	case m.NextCheckAt.After(now):
		next := "next check in " + span(m.NextCheckAt.Sub(now))
		if webhookMode {
			next += " if no webhook comes first"
		}
		parts = append(parts, next)
	default:
		parts = append(parts, "a check is due now (overdue by "+span(now.Sub(*m.NextCheckAt))+")")
	}
	if m.NotFoundChecks > 0 && m.NotFoundSince != nil {
		parts = append(parts, fmt.Sprintf("Replicate has answered 404 for this training %d times since %s ago; if it goes on, the model fails", m.NotFoundChecks, span(now.Sub(*m.NotFoundSince))))
	} else if m.CheckAttempts > 0 {
		parts = append(parts, strconv.Itoa(m.CheckAttempts)+" checks so far")
	}
	return strings.Join(parts, "; "), normal
}

// modelNotices are the messages a redirect to the model page may ask for;
// a fixed set, so a link cannot make the page say anything else.
var modelNotices = map[string]string{
	"started":          "The training was started on Replicate. This page updates by itself as it runs.",
	"start-pending":    "Replicate could not be reached to start the training. The model stays Pending and trainhook will finish starting it, without creating a second training.",
	"cancel-requested": "Cancellation requested. Replicate confirms it in a moment; this page updates by itself.",
	"canceled":         "The training was canceled.",
	"removed":          "Removed from the list. The model and its history are kept here.",
	"retried":          "A new training was started with the same trainer, destination and input.",
}

func (s *server) loadModel(r *http.Request) (modelView, error) {
	d, err := s.d.Service.Model(r.Context(), r.PathValue("id"))
	if err != nil {
		return modelView{}, err
	}
	now := s.now()
	cfg := s.banner()
	v := modelView{
		modelRow: modelRow{Model: d.Model, Now: now},
		Output:   parseOutput(d.Output),
		Input:    pretty(d.Input),
		Metadata: pretty(d.Metadata),
	}
	v.WebhookMode = cfg != nil && cfg.Webhook()
	v.Waiting, v.Normal = waiting(d.Model, now, v.WebhookMode, cfg == nil || cfg.ReplicateToken)
	for _, h := range d.History {
		v.History = append(v.History, historyRow{h})
	}
	switch {
	case d.Status.Terminal():
	case d.TrainingID == "":
		v.CancelNote = "It can be canceled once Replicate has accepted the training."
	default:
		v.CanCancel = true
	}
	v.CanRemove = d.Status.Terminal() && d.ArchivedAt == nil
	v.CanRetry = (d.Status == training.Failed || d.Status == training.Canceled) && d.Trainer != "" && d.Destination != ""
	if v.CanRetry {
		v.RetryKey = newKey()
	}
	return v, nil
}

func (s *server) modelPage(w http.ResponseWriter, r *http.Request) error {
	v, err := s.loadModel(r)
	if err != nil {
		return err
	}
	switch r.URL.Query().Get("fragment") {
	case "":
	case "row":
		return s.fragment(w, "model", "row", v.modelRow)
	case "live":
		return s.fragment(w, "model", "live", &view{CSRF: s.sessions.csrf(sessionOf(r)), Data: v})
	default:
		return invalid("fragment must be row or live")
	}
	page := &view{Title: v.Name, ModelID: v.ID, Data: v}
	if n, ok := modelNotices[r.URL.Query().Get("notice")]; ok {
		page.Notice = n
	}
	return s.renderView(w, r, http.StatusOK, "model", page)
}

func (s *server) cancelSubmit(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	m, err := s.d.Service.Cancel(r.Context(), id)
	if err != nil {
		code, msg, safe := statusOf(err)
		if !safe || code == http.StatusNotFound {
			return err
		}
		// Show why on the model page itself, with the model as it is now.
		v, lerr := s.loadModel(r)
		if lerr != nil {
			return lerr
		}
		return s.renderView(w, r, code, "model", &view{Title: v.Name, ModelID: v.ID, Data: v,
			Notice: "The training was not canceled: " + msg, NoticeIsError: true})
	}
	notice := "cancel-requested"
	if m.Status == training.Canceled {
		notice = "canceled"
	}
	http.Redirect(w, r, "/models/"+url.PathEscape(m.ID)+"?notice="+notice, http.StatusSeeOther)
	return nil
}

// startForm is the form to start a training, as typed, with a message per
// field that was wrong.
type startForm struct {
	Name, Trainer, Destination, Input, Metadata string
	Key                                         string // idempotency key: a double submit starts one training
	Errors                                      map[string]string
	Error                                       string // about the whole form
	RefusedModel                                string // a model Replicate refused, to link to
}

func (s *server) startPage(w http.ResponseWriter, r *http.Request) error {
	return s.render(w, r, http.StatusOK, "start", "Start a training", startForm{Key: newKey(), Errors: map[string]string{}})
}

func (s *server) startSubmit(w http.ResponseWriter, r *http.Request) error {
	f := startForm{
		Name: strings.TrimSpace(r.PostForm.Get("name")), Trainer: strings.TrimSpace(r.PostForm.Get("trainer")),
		Destination: strings.TrimSpace(r.PostForm.Get("destination")), Input: r.PostForm.Get("input"),
		Metadata: r.PostForm.Get("metadata"), Key: r.PostForm.Get("key"), Errors: map[string]string{},
	}
	if len(f.Key) > service.MaxIdemKeyLen || f.Key == "" {
		f.Key = newKey()
	}
	if f.Trainer == "" {
		f.Errors["trainer"] = "Enter the trainer, such as ostris/flux-dev-lora-trainer."
	}
	if f.Destination == "" {
		f.Errors["destination"] = "Enter the destination model, owner/name."
	}
	if msg := jsonObjectError(f.Input, "{\"steps\": 1000}"); msg != "" {
		f.Errors["input"] = msg
	}
	if strings.TrimSpace(f.Metadata) != "" {
		if msg := jsonObjectError(f.Metadata, "{\"user_id\": \"u_123\"}"); msg != "" {
			f.Errors["metadata"] = msg
		}
	}
	if len(f.Errors) > 0 {
		return s.render(w, r, http.StatusBadRequest, "start", "Start a training", f)
	}
	m, _, err := s.d.Service.Start(r.Context(), service.StartRequest{
		Name: f.Name, Trainer: f.Trainer, Destination: f.Destination, Input: json.RawMessage(f.Input),
		Metadata: json.RawMessage(f.Metadata), IdempotencyKey: f.Key,
	})
	var refused *service.ErrRefused
	switch {
	case errors.As(err, &refused):
		f.Error, f.RefusedModel = refused.Error(), refused.Model.ID
		f.Key = newKey() // the refused model keeps the old key; a retry is a new start
		return s.render(w, r, http.StatusUnprocessableEntity, "start", "Start a training", f)
	case err != nil && m.ID != "" && service.KindOf(err) == service.Upstream:
		http.Redirect(w, r, "/models/"+url.PathEscape(m.ID)+"?notice=start-pending", http.StatusSeeOther)
		return nil
	case err != nil:
		code, msg, safe := statusOf(err)
		if !safe {
			return err
		}
		field := fieldOf(msg)
		if field != "" {
			f.Errors[field] = msg
		} else {
			f.Error = msg
		}
		return s.render(w, r, code, "start", "Start a training", f)
	}
	http.Redirect(w, r, "/models/"+url.PathEscape(m.ID)+"?notice=started", http.StatusSeeOther)
	return nil
}

// fieldOf finds the form field a service message is about: the service
// names it first, in quotes.
func fieldOf(msg string) string {
	for _, f := range []string{"name", "trainer", "destination", "input", "metadata"} {
		if strings.HasPrefix(msg, `"`+f+`"`) {
			return f
		}
	}
	return ""
}

// jsonObjectError says what is wrong with a JSON object typed into a form,
// with the line and column of a syntax error, or "" when it is fine.
func jsonObjectError(text, example string) string {
	t := strings.TrimSpace(text)
	if t == "" {
		return ""
	}
	var v any
	err := json.Unmarshal([]byte(t), &v)
	var syn *json.SyntaxError
	switch {
	case errors.As(err, &syn):
		line, col := position(t, syn.Offset)
		return "This is not valid JSON: " + syn.Error() + " (line " + strconv.Itoa(line) + ", column " + strconv.Itoa(col) + ")."
	case err != nil:
		return "This is not valid JSON: " + err.Error() + "."
	}
	if _, ok := v.(map[string]any); !ok {
		return "Enter a JSON object, such as " + example + "."
	}
	return ""
}

// position turns a json.SyntaxError offset, which counts the byte that was
// wrong, into the 1-based line and column of that byte.
func position(text string, offset int64) (line, col int) {
	offset = min(max(offset-1, 0), int64(len(text)))
	before := text[:offset]
	line = strings.Count(before, "\n") + 1
	col = len(before) - strings.LastIndexByte(before, '\n')
	return line, col
}
