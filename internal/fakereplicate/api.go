package fakereplicate

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Seeded trainer models. The ostris version is one seen in real training
// objects; the fast-flux-trainer version is made up.
const (
	FluxTrainer        = "ostris/flux-dev-lora-trainer"
	FluxTrainerVersion = "e440909d3512c31646ee2e0c7d6f6f4923224863a6a10c494606e79fb5844497"
	FastFluxTrainer    = "replicate/fast-flux-trainer"
	FastFluxVersion    = "8b10794665aed907bb98a1a5324cd1d3a8bea0e9b31e65210967fb9c9e2e08ed"
	SDXLTrainer        = "stability-ai/sdxl"
	SDXLVersion        = "39ed52f2a78e934b3ba6e2a89f5b1c712de7dfea535525255b1aa35c5565e08b"
)

type model struct {
	owner, name, description, visibility, hardware string
	official                                       bool
	runCount                                       int
	versions                                       []modelVersion // oldest first
	trainings                                      []*simTraining // trainings into this model
}

type modelVersion struct {
	id        string
	createdAt time.Time
}

func (s *Server) seedModels() {
	base := time.Date(2024, 12, 1, 12, 0, 0, 0, time.UTC)
	add := func(owner, name, desc string, versions ...string) {
		m := &model{owner: owner, name: name, description: desc, visibility: "public", hardware: "gpu-h100", runCount: 41234}
		for i, v := range versions {
			m.versions = append(m.versions, modelVersion{id: v, createdAt: base.Add(time.Duration(i) * 24 * time.Hour).Add(time.Duration(len(s.models)) * time.Minute)})
		}
		s.models[owner+"/"+name] = m
	}
	add("ostris", "flux-dev-lora-trainer", "Fine-tune FLUX.1-dev using ai-toolkit",
		"885394e6a31c6f349dd4f9e6e7ffbabd8d9840ab2559ab78aed6b2451ab2cfef",
		"7f53f82066bcdfb1c549245a624019c26ca6e3c8034235cd4826425b61e77bec",
		"4ffd32160efd92e956d39c5338a9b8fbafca58e03f791f6d8011f3e20e8ea6fa",
		"26dce37af90b9d997eeb970d92e47de3064d46c300504ae376c75bef6a9022d2",
		"b6af14222e6bd9be257cbc1ea4afda3cd0503e1133083b9d1de0364d8568e6ef",
		FluxTrainerVersion)
	add("replicate", "fast-flux-trainer", "Train subjects or styles faster than ever", FastFluxVersion)
	add("stability-ai", "sdxl", "A text-to-image generative AI model that creates beautiful images",
		"da77bc59ee60423279fd632efb4795ab731d9e3ca9705ef3341091fb989b7eaf", SDXLVersion)
	s.models[FastFluxTrainer].official = true
	s.models[SDXLTrainer].official = true
}

// latestVersion is the newest version at now: a seeded one or one pushed
// by a training that has succeeded by now. s.mu is held.
func (m *model) latestVersion(now time.Time) (modelVersion, bool) {
	vs := m.versionsAt(now)
	if len(vs) == 0 {
		return modelVersion{}, false
	}
	return vs[len(vs)-1], true
}

func (m *model) versionsAt(now time.Time) []modelVersion {
	vs := slices.Clone(m.versions)
	for _, t := range m.trainings {
		if st := t.stateAt(now); st.status == statusSucceeded {
			vs = append(vs, modelVersion{id: t.outVersion, createdAt: *st.completedAt})
		}
	}
	slices.SortStableFunc(vs, func(a, b modelVersion) int { return a.createdAt.Compare(b.createdAt) })
	return vs
}

func (m *model) hasVersion(id string) bool {
	return slices.ContainsFunc(m.versions, func(v modelVersion) bool { return v.id == id })
}

func (m *model) json(now time.Time) map[string]any {
	var latest any
	if v, ok := m.latestVersion(now); ok {
		latest = v.json()
	}
	var desc any
	if m.description != "" {
		desc = m.description
	}
	return map[string]any{
		"url":             "https://replicate.com/" + m.owner + "/" + m.name,
		"owner":           m.owner,
		"name":            m.name,
		"description":     desc,
		"visibility":      m.visibility,
		"github_url":      nil,
		"paper_url":       nil,
		"license_url":     nil,
		"run_count":       m.runCount,
		"cover_image_url": nil,
		"default_example": nil,
		"is_official":     m.official,
		"latest_version":  latest,
	}
}

func (v modelVersion) json() map[string]any {
	return map[string]any{
		"id":          v.id,
		"created_at":  formatTime(v.createdAt, 6),
		"cog_version": "0.9.25",
		"openapi_schema": map[string]any{
			"openapi": "3.0.2",
			"info":    map[string]string{"title": "Cog", "version": "0.1.0"},
			"paths":   map[string]any{},
		},
	}
}

// baseOf is the scheme://host the client reached us by; urls and page
// links are built from it so they work whatever port the simulator is on.
func baseOf(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

func (s *Server) handleAccount(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"type":       "user",
		"username":   s.opts.Username,
		"name":       "Trainhook Simulator",
		"github_url": nil,
	})
}

func (s *Server) handleSecret(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"key": s.key.Secret()})
}

var (
	modelNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,99}$`)
	versionRe   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	hardware    = []string{"cpu", "gpu-t4", "gpu-l40s", "gpu-l40s-2x", "gpu-a40-small", "gpu-a40-large", "gpu-a100-large", "gpu-a100-large-2x", "gpu-h100"}
)

// maxBody bounds request bodies (Replicate's limit is not documented).
const maxBody = 1 << 20

// readObject reads a JSON object body. It answers 422 itself and returns
// false when the body is not one.
func readObject(w http.ResponseWriter, r *http.Request) (map[string]json.RawMessage, bool) {
	data, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil || len(data) > maxBody {
		writeProblem(w, http.StatusRequestEntityTooLarge, problem{Title: "Request too large", Detail: "The request body is too large."})
		return nil, false
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(data, &obj); err != nil || obj == nil {
		writeProblem(w, http.StatusUnprocessableEntity, problem{Title: "Invalid request", Detail: "The request body must be a JSON object."})
		return nil, false
	}
	return obj, true
}

func unknownKeys(obj map[string]json.RawMessage, allowed ...string) []invalidField {
	var out []invalidField
	for _, k := range slices.Sorted(maps.Keys(obj)) {
		if !slices.Contains(allowed, k) {
			out = append(out, invalidField{Type: "additional_property_not_allowed", Field: "", Description: "Additional property " + k + " is not allowed"})
		}
	}
	return out
}

// stringField reads an optional string member; ok is false when present
// but not a string.
func stringField(obj map[string]json.RawMessage, key string) (v string, present, ok bool) {
	raw, present := obj[key]
	if !present || string(raw) == "null" {
		return "", false, true
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", true, false
	}
	return v, true, true
}

func (s *Server) handleCreateModel(w http.ResponseWriter, r *http.Request) {
	obj, ok := readObject(w, r)
	if !ok {
		return
	}
	bad := unknownKeys(obj, "owner", "name", "visibility", "hardware", "description", "github_url", "paper_url", "license_url", "cover_image_url")
	fields := map[string]string{}
	for _, k := range []string{"owner", "name", "visibility", "hardware", "description"} {
		v, present, ok := stringField(obj, k)
		switch {
		case !ok:
			bad = append(bad, invalidField{Type: "invalid_type", Field: k, Description: "Invalid type. Expected: string"})
		case !present && k != "description":
			bad = append(bad, invalidField{Type: "required", Field: "", Description: k + " is required"})
		}
		fields[k] = v
	}
	if n := fields["name"]; n != "" && !modelNameRe.MatchString(n) {
		bad = append(bad, invalidField{Type: "pattern", Field: "name", Description: "name may contain only lowercase letters, numbers, dashes, underscores and periods"})
	}
	if v := fields["visibility"]; v != "" && v != "public" && v != "private" {
		bad = append(bad, invalidField{Type: "enum", Field: "visibility", Description: "visibility must be one of the following: \"public\", \"private\""})
	}
	if h := fields["hardware"]; h != "" && !slices.Contains(hardware, h) {
		bad = append(bad, invalidField{Type: "enum", Field: "hardware", Description: "hardware must be one of the following: " + strings.Join(hardware, ", ")})
	}
	if len(bad) > 0 {
		writeInvalid(w, bad)
		return
	}
	if fields["owner"] != s.opts.Username {
		writeProblem(w, http.StatusForbidden, problem{Title: "Forbidden", Detail: fmt.Sprintf("You do not have permission to create models for %q.", fields["owner"])})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := fields["owner"] + "/" + fields["name"]
	if _, exists := s.models[key]; exists {
		writeProblem(w, http.StatusConflict, problem{Title: "Conflict", Detail: "A model with that name and owner already exists."})
		return
	}
	m := &model{owner: fields["owner"], name: fields["name"], description: fields["description"], visibility: fields["visibility"], hardware: fields["hardware"]}
	s.models[key] = m
	writeJSON(w, http.StatusCreated, m.json(s.clock.Now()))
}

func (s *Server) handleGetModel(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.visibleModel(r.PathValue("owner"), r.PathValue("name"))
	if m == nil {
		writeNotFound(w)
		return
	}
	writeJSON(w, http.StatusOK, m.json(s.clock.Now()))
}

// visibleModel returns a public model or one of the account's. s.mu is held.
func (s *Server) visibleModel(owner, name string) *model {
	m := s.models[owner+"/"+name]
	if m == nil || m.visibility == "private" && m.owner != s.opts.Username {
		return nil
	}
	return m
}

func (s *Server) handleListVersions(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.visibleModel(r.PathValue("owner"), r.PathValue("name"))
	if m == nil {
		writeNotFound(w)
		return
	}
	vs := m.versionsAt(s.clock.Now())
	results := make([]any, 0, len(vs))
	for i := len(vs) - 1; i >= 0; i-- {
		results = append(results, vs[i].json())
	}
	writeJSON(w, http.StatusOK, map[string]any{"next": nil, "previous": nil, "results": results})
}

func (s *Server) handleGetVersion(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.visibleModel(r.PathValue("owner"), r.PathValue("name"))
	if m == nil {
		writeNotFound(w)
		return
	}
	for _, v := range m.versionsAt(s.clock.Now()) {
		if v.id == r.PathValue("version") {
			writeJSON(w, http.StatusOK, v.json())
			return
		}
	}
	writeNotFound(w)
}

// The webhook events, and the set sent when no filter is given. Replicate's
// docs disagree about that default; all four is the broadest reading and
// exercises receivers most.
var allEvents = []string{"start", "output", "logs", "completed"}

func (s *Server) handleCreateTraining(w http.ResponseWriter, r *http.Request) {
	owner, name, version := r.PathValue("owner"), r.PathValue("name"), r.PathValue("version")
	s.mu.Lock()
	trainer := s.visibleModel(owner, name)
	validVersion := trainer != nil && versionRe.MatchString(version) && trainer.hasVersion(version)
	s.mu.Unlock()
	if !validVersion {
		writeProblem(w, http.StatusUnprocessableEntity, problem{
			Title:  "Invalid version or not permitted",
			Detail: "The specified version does not exist (or perhaps you don't have permission to use it?)",
		})
		return
	}
	obj, ok := readObject(w, r)
	if !ok {
		return
	}
	// "version" is what Replicate's Go client also sends; "webhook_completed"
	// is the legacy webhook field, accepted and ignored.
	bad := unknownKeys(obj, "destination", "input", "webhook", "webhook_events_filter", "webhook_completed", "version")
	dest, present, isString := stringField(obj, "destination")
	switch {
	case !isString:
		bad = append(bad, invalidField{Type: "invalid_type", Field: "destination", Description: "Invalid type. Expected: string"})
	case !present:
		bad = append(bad, invalidField{Type: "required", Field: "", Description: "destination is required"})
	case strings.Count(dest, "/") != 1 || strings.HasPrefix(dest, "/") || strings.HasSuffix(dest, "/"):
		bad = append(bad, invalidField{Type: "format", Field: "destination", Description: "destination must be in the form owner/name"})
	}
	input := bytes.TrimSpace(obj["input"])
	switch {
	case len(input) == 0 || string(input) == "null":
		bad = append(bad, invalidField{Type: "required", Field: "", Description: "input is required"})
	case input[0] != '{':
		bad = append(bad, invalidField{Type: "invalid_type", Field: "input", Description: "Invalid type. Expected: object"})
	}
	webhook, _, isString := stringField(obj, "webhook")
	if !isString {
		bad = append(bad, invalidField{Type: "invalid_type", Field: "webhook", Description: "Invalid type. Expected: string"})
	} else if webhook != "" {
		if u, err := url.Parse(webhook); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad = append(bad, invalidField{Type: "format", Field: "webhook", Description: "webhook must be a valid http(s) URL"})
		}
	}
	var filter []string
	if raw, ok := obj["webhook_events_filter"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &filter); err != nil {
			bad = append(bad, invalidField{Type: "invalid_type", Field: "webhook_events_filter", Description: "Invalid type. Expected: array of strings"})
		}
		for _, e := range filter {
			if !slices.Contains(allEvents, e) {
				bad = append(bad, invalidField{Type: "enum", Field: "webhook_events_filter", Description: fmt.Sprintf("webhook_events_filter: %q is not one of \"start\", \"output\", \"logs\", \"completed\"", e)})
			}
		}
		if filter == nil {
			filter = []string{}
		}
	}
	if len(bad) > 0 {
		writeInvalid(w, bad)
		return
	}
	var compact bytes.Buffer
	_ = json.Compact(&compact, input)

	s.mu.Lock()
	defer s.mu.Unlock()
	destModel := s.models[dest]
	if destModel == nil || destModel.owner != s.opts.Username {
		writeProblem(w, http.StatusNotFound, problem{Detail: "The specified training destination does not exist"})
		return
	}
	t := s.newTraining(owner+"/"+name, version, dest, compact.Bytes(), webhook, filter, baseOf(r))
	destModel.trainings = append(destModel.trainings, t)
	writeJSON(w, http.StatusCreated, t.json(s.clock.Now(), viewCreate, t.baseURL))
}

// newTraining creates a training, draws its fate and schedules its
// webhooks. s.mu is held.
func (s *Server) newTraining(trainer, version, dest string, input json.RawMessage, webhook string, filter []string, base string) *simTraining {
	now := s.clock.Now()
	t := &simTraining{
		seq: len(s.trainings), id: s.newID(), model: trainer, version: version, destination: dest,
		input: input, webhook: webhook, filter: filter, baseURL: base, createdAt: now,
		steps: 1000, rank: 16, batch: 1, learningRate: 0.0004, autocaption: true,
		images: 10 + s.rng.IntN(31), outVersion: s.randHex(64),
		weights: "https://replicate.delivery/xezq/" + s.randAlnum(43, true) + "/trained_model.tar",
	}
	t.readInput()
	// Queued for 5-15% of the run, as capacity allows.
	queue := time.Duration(float64(s.opts.Duration) * (0.05 + 0.1*s.rng.Float64()))
	t.startAt = now.Add(queue)
	t.runEnd = now.Add(s.opts.Duration)
	switch u := s.rng.Float64(); {
	case u < s.faults.AbortRate:
		// Aborted: the deadline passed while queued; it never starts.
		t.outcome, t.endAt, t.startAt = statusAborted, t.startAt, time.Time{}
	case u < s.faults.AbortRate+s.faults.FailRate:
		t.outcome = statusFailed
		t.failure = failures[s.rng.IntN(len(failures))]
		if t.inputImages == "" && s.rng.IntN(2) == 0 {
			t.failure = missingImages
		}
		if t.failure.at < 0 {
			t.failure.at = trainFrom + (trainTo-trainFrom)*(0.1+0.8*s.rng.Float64())
		}
		t.endAt = t.startAt.Add(time.Duration(t.failure.at * float64(t.runEnd.Sub(t.startAt))))
		if !t.endAt.After(t.startAt) {
			t.endAt = t.startAt.Add(387 * time.Millisecond)
			if t.endAt.After(t.runEnd) {
				t.endAt = t.runEnd
			}
		}
	default:
		t.outcome, t.endAt = statusSucceeded, t.runEnd
	}
	if webhook != "" {
		t.events = map[string]bool{}
		events := filter
		if events == nil {
			events = allEvents
		}
		for _, e := range events {
			t.events[e] = true
		}
		s.scheduleTraining(t)
	}
	s.trainings = append(s.trainings, t)
	s.byID[t.id] = t
	return t
}

// readInput takes what the logs mention from the trainer's input.
func (t *simTraining) readInput() {
	var in map[string]any
	if json.Unmarshal(t.input, &in) != nil {
		return
	}
	num := func(keys ...string) (float64, bool) {
		for _, k := range keys {
			if f, ok := in[k].(float64); ok {
				return f, true
			}
		}
		return 0, false
	}
	if v, ok := num("steps", "training_steps", "max_train_steps"); ok && v >= 1 {
		t.steps = int(min(v, 100000))
	}
	if v, ok := num("lora_rank"); ok && v >= 1 {
		t.rank = int(min(v, 1024))
	}
	if v, ok := num("batch_size", "train_batch_size"); ok && v >= 1 {
		t.batch = int(min(v, 1024))
	}
	if v, ok := num("learning_rate"); ok && v > 0 {
		t.learningRate = v
	}
	if v, ok := in["autocaption"].(bool); ok {
		t.autocaption = v
	}
	if v, ok := in["input_images"].(string); ok {
		t.inputImages = v
	}
}

const idAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789"

// newID returns a fresh 26-character lowercase alphanumeric id. s.mu is held.
func (s *Server) newID() string {
	for {
		id := s.randAlnum(26, false)
		if _, taken := s.byID[id]; !taken {
			return id
		}
	}
}

func (s *Server) randAlnum(n int, mixedCase bool) string {
	alphabet := idAlphabet
	if mixedCase {
		alphabet += "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
	}
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[s.rng.IntN(len(alphabet))]
	}
	return string(b)
}

func (s *Server) randHex(n int) string {
	const hexDigits = "0123456789abcdef"
	b := make([]byte, n)
	for i := range b {
		b[i] = hexDigits[s.rng.IntN(16)]
	}
	return string(b)
}

func (s *Server) handleGetTraining(v view) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		t := s.byID[r.PathValue("id")]
		if t == nil {
			writeNotFound(w)
			return
		}
		writeJSON(w, http.StatusOK, t.json(s.clock.Now(), v, baseOf(r)))
	}
}

// handleCancel cancels a training at any stage: a queued one goes straight
// to canceled. Canceling a finished training changes nothing and answers
// 200 with the training as it is (Replicate's behaviour here is not
// documented; this is the idempotent reading, and what makes a retried
// cancel safe).
func (s *Server) handleCancel(v view) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		defer s.mu.Unlock()
		t := s.byID[r.PathValue("id")]
		if t == nil {
			writeNotFound(w)
			return
		}
		now := s.clock.Now()
		if st := t.stateAt(now); !terminal(st.status) {
			s.force(t, statusCanceled, "", now)
		}
		writeJSON(w, http.StatusOK, t.json(now, v, baseOf(r)))
	}
}

// force ends a running training now. s.mu is held.
func (s *Server) force(t *simTraining, status, errMsg string, now time.Time) {
	st := t.stateAt(now)
	f := &forcedEnd{status: status, at: now, startedAt: st.startedAt, err: errMsg}
	if f.startedAt == nil && status != statusAborted {
		started := now
		f.startedAt = &started
	}
	t.forced = f
	if t.events != nil {
		s.push(&event{at: now, kind: evTerminal, t: t})
	}
}

// A list cursor is opaque to clients; inside it is the position of the
// page's edge and the direction to read in.
func encodeCursor(t *simTraining, dir byte) string {
	raw := fmt.Sprintf("p=%s&s=%d&d=%c", t.createdAt.UTC().Format(time.RFC3339Nano), t.seq, dir)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

func decodeCursor(c string) (seq int, dir byte, ok bool) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, 0, false
	}
	q, err := url.ParseQuery(string(raw))
	if err != nil {
		return 0, 0, false
	}
	seq, err = strconv.Atoi(q.Get("s"))
	d := q.Get("d")
	if err != nil || seq < 0 || (d != "n" && d != "p") {
		return 0, 0, false
	}
	return seq, d[0], true
}

// pageSize is Replicate's list page size.
const pageSize = 100

func (s *Server) handleListTrainings(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.trainings)
	var page []*simTraining
	cursor := r.URL.Query().Get("cursor")
	switch seq, dir, ok := decodeCursor(cursor); {
	case cursor == "":
		for i := n - 1; i >= 0 && len(page) < pageSize; i-- {
			page = append(page, s.trainings[i])
		}
	case !ok || seq >= n:
		writeProblem(w, http.StatusBadRequest, problem{Title: "Invalid cursor", Detail: "The cursor is not valid."})
		return
	case dir == 'n':
		for i := seq - 1; i >= 0 && len(page) < pageSize; i-- {
			page = append(page, s.trainings[i])
		}
	default:
		for i := min(n-1, seq+pageSize); i > seq; i-- {
			page = append(page, s.trainings[i])
		}
	}
	base := baseOf(r)
	var next, prev any
	if len(page) > 0 {
		if last := page[len(page)-1]; last.seq > 0 {
			next = base + "/v1/trainings?cursor=" + encodeCursor(last, 'n')
		}
		if first := page[0]; cursor != "" && first.seq < n-1 {
			prev = base + "/v1/trainings?cursor=" + encodeCursor(first, 'p')
		}
	}
	now := s.clock.Now()
	results := make([]any, len(page))
	for i, t := range page {
		results[i] = t.json(now, viewList, base)
	}
	writeJSON(w, http.StatusOK, map[string]any{"next": next, "previous": prev, "results": results})
}

// problem is an RFC 7807 body as Replicate sends it.
type problem struct {
	Type          string         `json:"type,omitempty"`
	Title         string         `json:"title,omitempty"`
	Detail        string         `json:"detail"`
	Status        int            `json:"status"`
	InvalidFields []invalidField `json:"invalid_fields,omitempty"`
	RetryAfter    *int           `json:"retry_after,omitempty"`
}

type invalidField struct {
	Type        string `json:"type"`
	Field       string `json:"field"`
	Description string `json:"description"`
}

func writeProblem(w http.ResponseWriter, status int, p problem) {
	p.Status = status
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(p)
}

func writeInvalid(w http.ResponseWriter, fields []invalidField) {
	descs := make([]string, len(fields))
	for i, f := range fields {
		descs[i] = f.Description
	}
	writeProblem(w, http.StatusUnprocessableEntity, problem{
		Title: "Input validation failed", Detail: "- " + strings.Join(descs, "\n- "), InvalidFields: fields,
	})
}

func writeNotFound(w http.ResponseWriter) {
	writeProblem(w, http.StatusNotFound, problem{Title: "Not found", Detail: "The requested resource could not be found."})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
}
