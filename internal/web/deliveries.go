package web

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
	"github.com/trainhook/trainhook/internal/webhook"
)

// outcomes are the values a delivery's outcome can have, for the filter.
var outcomes = []string{
	string(training.Move), string(training.Refresh), string(training.Same), string(training.Stale),
	string(training.Conflict), string(training.Unknown),
	string(service.OutcomeDuplicate), string(service.OutcomeHeld), string(service.OutcomeRefused),
}

// deliveryQuery is the deliveries filter as the page and the API take it:
// ?outcome=, ?verified=true|false, ?model=, ?limit=, ?cursor=.
type deliveryQuery struct {
	Outcome  string
	Verified string // "", "true" or "false"
	Model    string
	Limit    int
	cursor   int64
}

func parseDeliveryQuery(q url.Values) (deliveryQuery, store.DeliveryFilter, error) {
	dq := deliveryQuery{Outcome: q.Get("outcome"), Verified: q.Get("verified"), Model: strings.TrimSpace(q.Get("model"))}
	var f store.DeliveryFilter
	if dq.Outcome != "" && !slices.Contains(outcomes, dq.Outcome) {
		return dq, f, invalid("outcome must be one of %s, got %q", strings.Join(outcomes, ", "), clip(dq.Outcome, 30))
	}
	f.Outcome = dq.Outcome
	switch dq.Verified {
	case "":
	case "true", "false":
		v := dq.Verified == "true"
		f.Verified = &v
	default:
		return dq, f, invalid("verified must be true or false, got %q", clip(dq.Verified, 20))
	}
	if dq.Model != "" {
		if len(dq.Model) > 64 || strings.ContainsFunc(dq.Model, func(r rune) bool { return r < 0x21 || r > 0x7e }) {
			return dq, f, invalid("model must be a model id, got %q", clip(dq.Model, 30))
		}
		f.ModelID = dq.Model
	}
	limit, err := parseLimit(q.Get("limit"))
	if err != nil {
		return dq, f, err
	}
	dq.Limit, f.Limit = limit, limit
	if c := q.Get("cursor"); c != "" {
		id, ok := decodeDeliveryCursor(c)
		if !ok {
			return dq, f, invalid("cursor %q is not one this server made; start again from the first page", clip(c, 40))
		}
		dq.cursor, f.Before = id, id
	}
	return dq, f, nil
}

// url is the list's URL with this filter and a cursor.
func (dq deliveryQuery) url(base, cursor string) string {
	q := url.Values{}
	if dq.Outcome != "" {
		q.Set("outcome", dq.Outcome)
	}
	if dq.Verified != "" {
		q.Set("verified", dq.Verified)
	}
	if dq.Model != "" {
		q.Set("model", dq.Model)
	}
	if dq.Limit != pageSize {
		q.Set("limit", strconv.Itoa(dq.Limit))
	}
	if cursor != "" {
		q.Set("cursor", cursor)
	}
	if len(q) == 0 {
		return base
	}
	return base + "?" + q.Encode()
}

// Outcomes lists the outcome choices for the filter.
func (dq deliveryQuery) Outcomes() []string { return outcomes }

// The delivery cursor is base64url of "d1:" and the id of the last one shown.
const deliveryCursorPrefix = "d1:"

func encodeDeliveryCursor(id int64) string {
	return base64.RawURLEncoding.EncodeToString([]byte(deliveryCursorPrefix + strconv.FormatInt(id, 10)))
}

func decodeDeliveryCursor(c string) (int64, bool) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	n, ok := strings.CutPrefix(string(b), deliveryCursorPrefix)
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(n, 10, 64)
	return id, err == nil && id > 0 && strconv.FormatInt(id, 10) == n
}

// listDeliveries returns a page of deliveries and the next page's cursor.
func (s *server) listDeliveries(r *http.Request, f store.DeliveryFilter) ([]training.Delivery, string, error) {
	want := f.Limit
	f.Limit++ // one more says whether there is a next page
	ds, err := s.d.Store.ListDeliveries(r.Context(), f)
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ds) > want {
		ds = ds[:want]
		next = encodeDeliveryCursor(ds[want-1].ID)
	}
	if ds == nil {
		ds = []training.Delivery{}
	}
	return ds, next, nil
}

type deliveryRow struct {
	training.Delivery
	Now       time.Time
	ModelName string // "" when unknown
}

// Age is how long ago the delivery was received.
func (d deliveryRow) Age() string { return ago(d.Now.Sub(d.ReceivedAt)) }

type deliveriesView struct {
	Rows     []deliveryRow
	Filter   deliveryQuery
	NextURL  string
	FirstURL string
}

func (s *server) deliveriesPage(w http.ResponseWriter, r *http.Request) error {
	dq, f, err := parseDeliveryQuery(r.URL.Query())
	if err != nil {
		return err
	}
	ds, next, err := s.listDeliveries(r, f)
	if err != nil {
		return err
	}
	v := deliveriesView{Filter: dq}
	now := s.now()
	names := map[string]string{} // a page names few models, each many times
	for _, d := range ds {
		row := deliveryRow{Delivery: d, Now: now}
		if d.ModelID != "" {
			name, ok := names[d.ModelID]
			if !ok {
				if m, err := s.d.Store.GetModel(r.Context(), d.ModelID); err == nil {
					name = m.Name
				}
				names[d.ModelID] = name
			}
			row.ModelName = name
		}
		v.Rows = append(v.Rows, row)
	}
	if next != "" {
		v.NextURL = dq.url("/deliveries", next)
	}
	if dq.cursor != 0 {
		v.FirstURL = dq.url("/deliveries", "")
	}
	return s.render(w, r, http.StatusOK, "deliveries", "Deliveries", v)
}

// deliveryView is one delivery's page, and what a replay of it did.
type deliveryView struct {
	deliveryRow
	Payload string
	Replay  *webhook.Replayed
}

// ReplayOK reports whether the replay was answered 2xx.
func (d deliveryView) ReplayOK() bool {
	return d.Replay != nil && d.Replay.Code >= 200 && d.Replay.Code < 300
}

func (s *server) loadDelivery(r *http.Request) (training.Delivery, error) {
	raw := r.PathValue("id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return training.Delivery{}, notFound("no delivery with id %q", clip(raw, 30))
	}
	d, err := s.d.Store.GetDelivery(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		return d, notFound("no delivery with id %d", id)
	}
	return d, err
}

func (s *server) deliveryPage(w http.ResponseWriter, r *http.Request) error {
	d, err := s.loadDelivery(r)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "delivery", "Delivery "+strconv.FormatInt(d.ID, 10), s.deliveryView(d, nil))
}

func (s *server) deliveryView(d training.Delivery, rep *webhook.Replayed) deliveryView {
	v := deliveryView{deliveryRow: deliveryRow{Delivery: d, Now: s.now()}, Replay: rep}
	if json.Valid(d.Payload) {
		v.Payload = pretty(d.Payload)
	} else {
		v.Payload = strings.ToValidUTF8(string(d.Payload), "\uFFFD")
	}
	return v
}

func (s *server) replaySubmit(w http.ResponseWriter, r *http.Request) error {
	d, err := s.loadDelivery(r)
	if err != nil {
		return err
	}
	rep, err := s.replay(r, d)
	if err != nil {
		return err
	}
	return s.render(w, r, http.StatusOK, "delivery", "Delivery "+strconv.FormatInt(d.ID, 10), s.deliveryView(d, &rep))
}

func (s *server) replay(r *http.Request, d training.Delivery) (webhook.Replayed, error) {
	if s.d.Replay == nil {
		return webhook.Replayed{}, &service.Error{Kind: service.Conflict, Msg: "this server cannot replay deliveries (no webhook handler is configured)"}
	}
	rep := s.d.Replay(r.Context(), d)
	s.log.Info("dashboard: delivery replayed", "delivery_id", d.ID, "code", rep.Code, "outcome", rep.Outcome)
	return rep, nil
}

// apiDelivery is a delivery in the JSON API, with its payload when that is
// JSON (a refused request's body may be anything).
type apiDelivery struct {
	training.Delivery
	Payload json.RawMessage `json:"payload,omitempty"`
}

func toAPI(d training.Delivery) apiDelivery {
	a := apiDelivery{Delivery: d}
	if p := bytes.TrimSpace(d.Payload); len(p) > 0 && json.Valid(p) {
		a.Payload = p
	}
	return a
}

func (s *server) apiDeliveries(w http.ResponseWriter, r *http.Request) error {
	_, f, err := parseDeliveryQuery(r.URL.Query())
	if err != nil {
		return err
	}
	ds, next, err := s.listDeliveries(r, f)
	if err != nil {
		return err
	}
	out := struct {
		Deliveries []training.Delivery `json:"deliveries"`
		NextCursor string              `json:"next_cursor,omitempty"`
	}{ds, next}
	writeJSON(w, http.StatusOK, out)
	return nil
}

func (s *server) apiDelivery(w http.ResponseWriter, r *http.Request) error {
	d, err := s.loadDelivery(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, toAPI(d))
	return nil
}

// apiReplay answers 200 with what the replay did, whatever the webhook
// handler answered it: the replay ran; its own code is in the body.
func (s *server) apiReplay(w http.ResponseWriter, r *http.Request) error {
	d, err := s.loadDelivery(r)
	if err != nil {
		return err
	}
	rep, err := s.replay(r, d)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, struct {
		DeliveryID int64 `json:"delivery_id"`
		webhook.Replayed
	}{d.ID, rep})
	return nil
}

// newKey is a random idempotency key for the start form.
func newKey() string {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return "web-" + base64.RawURLEncoding.EncodeToString(b)
}
