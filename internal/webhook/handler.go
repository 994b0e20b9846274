// Package webhook receives Replicate's signed webhook deliveries. Intake runs
// in a fixed order: cap the body, read the raw bytes once, verify the
// signature on those bytes, parse, then hand the report to the service, which
// dedupes on webhook-id and persists; only then is the delivery answered 2xx.
package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// ProbePrefix starts the training id of `trainhook doctor`'s test
// deliveries. They go through the whole intake, signature included, and are
// answered {"outcome":"probe"} without being stored.
const ProbePrefix = "trainhook-doctor-"

// maxAudit caps how much of a refused delivery's body is kept for audit.
// Refusals come mostly from senders that are not Replicate (unsigned,
// forged), so each must cost little disk: the first 4 KiB show what was
// sent, and the reason records the body's true length.
const maxAudit = 4 << 10

// MaxWebhookID is the longest webhook-id accepted. Deliveries dedupe on the
// whole id, so a longer one is refused rather than cut: two deliveries
// sharing a cut prefix would otherwise count as one, and the second outcome
// would be lost.
const MaxWebhookID = 200

// Applier is what the handler needs from the service.
type Applier interface {
	Deliver(ctx context.Context, obs training.Observation, d training.Delivery) (service.Result, error)
	RecordRefused(d training.Delivery) bool
}

// Handler serves Path. Its fields are fixed after start-up.
type Handler struct {
	Keys    replicate.Keys
	Service Applier
	MaxBody int64
	Now     func() time.Time
	Log     *slog.Logger
	// CheckToken verifies the per-model token a delivery URL carries
	// (?model=ID&token=T). When nil, those parameters are ignored.
	CheckToken func(modelID, token string) bool

	received *metrics.Counter
	refused  *metrics.Counter
	latency  *metrics.Histogram
}

// NewHandler returns a handler with its metrics registered in reg.
func NewHandler(h Handler, reg *metrics.Registry) *Handler {
	if h.Now == nil {
		h.Now = time.Now
	}
	if h.Log == nil {
		h.Log = slog.Default()
	}
	h.received = reg.NewCounter("trainhook_webhook_deliveries_total", "Webhook deliveries received, by HTTP status answered.", "code")
	h.refused = reg.NewCounter("trainhook_webhook_refusals_total", "Webhook deliveries refused, by reason.", "reason")
	h.latency = reg.NewHistogram("trainhook_webhook_intake_seconds", "Time from request to answer for webhook deliveries.", metrics.LatencyBuckets)
	return &h
}

// outcomeProbe answers a doctor's probe delivery, which changes nothing.
const outcomeProbe service.Outcome = "probe"

type answer struct {
	Outcome service.Outcome `json:"outcome,omitempty"`
	ModelID string          `json:"model_id,omitempty"`
	Status  string          `json:"status,omitempty"`
	Error   string          `json:"error,omitempty"`
	// cause is why a delivery could not be stored: logged, never sent.
	cause error
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	code, ans, d := h.intake(r, h.Now(), 0)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	if code == http.StatusMethodNotAllowed {
		w.Header().Set("Allow", http.MethodPost)
	}
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(ans)

	elapsed := time.Since(start)
	h.latency.Observe(elapsed)
	h.received.Inc(codeLabel(code))
	attrs := []any{"webhook_id", d.WebhookID, "training_id", d.TrainingID, "model_id", ans.ModelID,
		"code", code, "latency_ms", float64(elapsed.Microseconds()) / 1000}
	switch {
	case code < 300:
		h.Log.Info("webhook delivery", append(attrs, "outcome", ans.Outcome, "remote_status", d.RemoteStatus)...)
	case code >= 500:
		h.Log.Error("webhook delivery not stored; Replicate will retry", append(attrs, "error", ans.Error, "cause", ans.cause)...)
	default:
		h.Log.Warn("webhook delivery refused", append(attrs, "reason", ans.Error, "remote_addr", r.RemoteAddr)...)
	}
}

// Replayed is what replaying a stored delivery did.
type Replayed struct {
	Code    int             `json:"code"`
	Outcome service.Outcome `json:"outcome,omitempty"`
	ModelID string          `json:"model_id,omitempty"`
	Status  string          `json:"status,omitempty"`
	Error   string          `json:"error,omitempty"`
}

// Replay runs a stored delivery through the handler as it is configured now
// (useful after fixing a wrong signing key). The signature is verified again
// with today's keys against the original headers and body; the timestamp
// window is measured from when the delivery was first received, since an
// operator replays it on purpose. Its webhook-id still dedupes, so a
// delivery that was applied is not applied twice. The replay is recorded as
// a new delivery that names the one it replayed.
func (h *Handler) Replay(ctx context.Context, d training.Delivery) Replayed {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, config.WebhookPath, bytes.NewReader(d.Payload))
	req.ContentLength = int64(len(d.Payload))
	req.Header.Set("Content-Type", "application/json")
	if d.WebhookID != "" {
		req.Header.Set(replicate.HeaderID, d.WebhookID)
	}
	if d.Timestamp != "" {
		req.Header.Set(replicate.HeaderTimestamp, d.Timestamp)
	}
	if d.Signature != "" {
		req.Header.Set(replicate.HeaderSignature, d.Signature)
	}
	start := time.Now()
	// The request is rebuilt without the URL it first came to, so a
	// delivery that was bound to a model (by its ?model=&token=, checked
	// when it was received) stays bound to it.
	code, ans, got := h.intakeAt(req, h.Now(), d.ReceivedAt, d.ID, d.ModelID)
	attrs := []any{"delivery_id", d.ID, "webhook_id", got.WebhookID, "training_id", got.TrainingID,
		"code", code, "outcome", ans.Outcome, "error", ans.Error, "latency_ms", float64(time.Since(start).Microseconds()) / 1000}
	if ans.cause != nil {
		attrs = append(attrs, "cause", ans.cause)
	}
	h.Log.Info("webhook delivery replayed", attrs...)
	return Replayed{Code: code, Outcome: ans.Outcome, ModelID: ans.ModelID, Status: ans.Status, Error: ans.Error}
}

// intake returns the status code, the answer and the delivery as recorded.
func (h *Handler) intake(r *http.Request, now time.Time, replayOf int64) (int, answer, training.Delivery) {
	return h.intakeAt(r, now, now, replayOf, "")
}

// intakeAt verifies the timestamp against verifyAt, which is now except for
// replays; boundModel is the model a replayed delivery was bound to.
func (h *Handler) intakeAt(r *http.Request, now, verifyAt time.Time, replayOf int64, boundModel string) (int, answer, training.Delivery) {
	d := training.Delivery{
		WebhookID: clip(r.Header.Get(replicate.HeaderID), MaxWebhookID), ReceivedAt: now, ReplayOf: replayOf,
		Timestamp: clip(r.Header.Get(replicate.HeaderTimestamp), 40), Signature: clip(r.Header.Get(replicate.HeaderSignature), 1000),
	}
	refuse := func(code int, reason, msg string, body []byte) (int, answer, training.Delivery) {
		h.refused.Inc(reason)
		d.Reason = msg
		d.Outcome = string(service.OutcomeRefused)
		if len(body) > maxAudit {
			d.Reason += " [body " + itoa(int64(len(body))) + " bytes; the first " + itoa(maxAudit) + " kept]"
			body = body[:maxAudit]
		}
		d.Payload = body
		if code != http.StatusMethodNotAllowed {
			h.Service.RecordRefused(d)
		}
		return code, answer{Error: msg}, d
	}

	if r.Method != http.MethodPost {
		msg := "use POST: this endpoint receives Replicate's webhook deliveries"
		if r.Method == http.MethodOptions {
			msg = "this endpoint takes server-to-server POSTs from Replicate; browsers may not call it (no CORS)"
		}
		return refuse(http.StatusMethodNotAllowed, "method", msg, nil)
	}
	if len(r.Header.Get(replicate.HeaderID)) > MaxWebhookID {
		return refuse(http.StatusBadRequest, "webhook_id", "webhook-id is longer than "+itoa(MaxWebhookID)+
			" bytes; Replicate's ids are short, and trainhook dedupes on the whole id, so it does not cut longer ones", nil)
	}
	if r.ContentLength > h.MaxBody {
		return refuse(http.StatusRequestEntityTooLarge, "too_large", tooLarge(h.MaxBody), nil)
	}
	body, err := readBody(r, h.MaxBody)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return refuse(http.StatusRequestEntityTooLarge, "too_large", tooLarge(h.MaxBody), nil)
		}
		return refuse(http.StatusBadRequest, "read_error", "could not read the request body: "+err.Error(), nil)
	}
	if err := h.Keys.Verify(r.Header, body, verifyAt); err != nil {
		return refuse(http.StatusUnauthorized, signatureReason(err), "webhook signature: "+err.Error(), body)
	}
	d.Verified = true
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return refuse(http.StatusUnsupportedMediaType, "content_type", "Content-Type must be application/json, got "+clip(ct, 60), body)
		}
	}
	obsModel := boundModel
	if h.CheckToken != nil {
		q := r.URL.Query()
		if q.Has("model") || q.Has("token") {
			obsModel = q.Get("model")
			if !h.CheckToken(obsModel, q.Get("token")) {
				return refuse(http.StatusForbidden, "model_token", "the token in the webhook URL does not match its model", body)
			}
		}
	}
	t, err := replicate.ParseReport(body)
	if err != nil {
		return refuse(http.StatusBadRequest, "malformed", "payload: "+err.Error(), body)
	}
	d.TrainingID, d.RemoteStatus, d.Payload = t.ID, t.Status, body
	if strings.HasPrefix(t.ID, ProbePrefix) {
		// trainhook doctor's end-to-end check: verified and parsed like any
		// delivery, then answered without touching a record.
		return http.StatusOK, answer{Outcome: outcomeProbe}, d
	}
	if _, known := training.MapRemote(t.Status); !known {
		h.Log.Warn("Replicate sent a status trainhook does not know; recorded, not applied", "training_id", t.ID, "status", clip(t.Status, 40))
	}
	obs := t.Observation(training.SourceWebhook, d.WebhookID, now)
	obs.ModelID = obsModel
	res, err := h.Service.Deliver(r.Context(), obs, d)
	if err != nil {
		return http.StatusServiceUnavailable, answer{Error: "the delivery could not be stored and was not applied; Replicate will retry", cause: err}, d
	}
	if res.Outcome == service.OutcomeRefused {
		h.refused.Inc("model_binding")
		return http.StatusForbidden, answer{Outcome: res.Outcome, Error: res.Refusal.Error()}, d
	}
	a := answer{Outcome: res.Outcome}
	if res.Model != nil {
		a.ModelID, a.Status = res.Model.ID, string(res.Model.Status)
	}
	return http.StatusOK, a, d
}

// readBody reads the raw body once, up to limit bytes. The buffer grows as
// bytes arrive, never ahead of them: a sender that claims a large
// Content-Length and then sends little costs memory for what it sent, not
// for what it claimed. It starts small and doubles when full, so it is at
// most twice what arrived, and never more than the claim (or the limit)
// plus the one byte that lets a read see the end.
func readBody(r *http.Request, limit int64) ([]byte, error) {
	ceiling := limit + 1
	if r.ContentLength > 0 && r.ContentLength < limit {
		ceiling = r.ContentLength + 1
	}
	buf := make([]byte, 0, min(int64(initialBody), ceiling))
	body := http.MaxBytesReader(nil, r.Body, limit)
	for {
		if len(buf) == cap(buf) {
			if int64(len(buf)) >= ceiling {
				// Only a body that does not keep to its own
				// Content-Length gets here; net/http's never does.
				return nil, errors.New("body is longer than its Content-Length")
			}
			next := min(2*int64(cap(buf)), ceiling)
			if next >= ceiling-1 {
				// A body of exactly its Content-Length then fits with the
				// byte that shows its end, instead of costing one more copy.
				next = ceiling
			}
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		n, err := body.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			if r.ContentLength > 0 && int64(len(buf)) < r.ContentLength {
				return nil, io.ErrUnexpectedEOF
			}
			return buf, nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// initialBody is the first buffer readBody allocates: enough for most
// deliveries (a training's status without a long log) in one read.
const initialBody = 16 << 10

func tooLarge(limit int64) string {
	return "body is larger than TRAINHOOK_MAX_BODY (" + humanBytes(limit) + "); training payloads carry the whole log, so raise the limit if real deliveries hit it"
}

func signatureReason(err error) string {
	switch {
	case errors.Is(err, replicate.ErrNoKey):
		return "no_key"
	case errors.Is(err, replicate.ErrMissingHeaders), errors.Is(err, replicate.ErrDuplicateHeader):
		return "headers"
	case errors.Is(err, replicate.ErrBadTimestamp):
		return "bad_timestamp"
	case errors.Is(err, replicate.ErrTooOld), errors.Is(err, replicate.ErrTooNew):
		return "expired"
	}
	return "bad_signature"
}

func codeLabel(code int) string { return strconv.Itoa(code) }

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return itoa(n>>20) + " MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return itoa(n>>10) + " KiB"
	}
	return itoa(n) + " bytes"
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
