package replicate

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrOutcomeUnknown says a create (POST /models, POST .../trainings) was sent
// but its answer was lost or was a server error, so Replicate may or may not
// have acted on it. The client never re-sends such a request: a second
// training would cost money and leave two records for one intent. The
// caller recovers by listing recent trainings (ListTrainings) and matching
// them to what it meant to create, or by GETting the model for a model
// create. The cause (a network error or the *APIError) is wrapped too.
var ErrOutcomeUnknown = errors.New("the request was sent but its outcome is unknown (answer lost or server error); it was not re-sent: list recent trainings or get the model to find out whether it took effect")

// ErrNoVersion is returned by LatestVersion for a model that has no version yet.
var ErrNoVersion = errors.New("the model has no version yet")

// InvalidField is one entry of a 422 body's invalid_fields.
type InvalidField struct {
	Type        string `json:"type"`
	Field       string `json:"field"`
	Description string `json:"description"`
}

// APIError is a non-2xx answer from Replicate. Replicate sends RFC 7807
// problem bodies (application/problem+json); fields it left out are empty.
type APIError struct {
	// Endpoint names the call, such as "trainings.create".
	Endpoint string
	// StatusCode is the HTTP status of the response; Status the "status"
	// member of the body (usually the same, 0 when absent).
	StatusCode    int
	Type          string
	Title         string
	Detail        string
	Instance      string
	Status        int
	InvalidFields []InvalidField
	// RetryAfter is how long Replicate asked us to wait (Retry-After header,
	// else the body's retry_after); 0 when it did not say.
	RetryAfter time.Duration
	// Body is the raw response body, at most maxErrorBody bytes.
	Body []byte
}

const maxErrorBody = 64 << 10

func (e *APIError) Error() string {
	var b strings.Builder
	if e.Endpoint != "" {
		b.WriteString(e.Endpoint)
		b.WriteString(": ")
	}
	switch {
	case e.StatusCode == http.StatusUnauthorized:
		b.WriteString("Replicate rejected the API token (401): check REPLICATE_API_TOKEN")
		return b.String()
	case e.StatusCode == http.StatusPaymentRequired:
		b.WriteString("Replicate requires billing to be set up for this account (402)")
	case e.StatusCode == http.StatusNotFound && e.Endpoint == "trainings.create":
		b.WriteString("the destination model does not exist (404): create it first (POST /v1/models) or fix the destination")
	case e.StatusCode == http.StatusTooManyRequests:
		b.WriteString("Replicate throttled the request (429)")
		if e.RetryAfter > 0 {
			fmt.Fprintf(&b, ", retry after %s", e.RetryAfter)
		}
	default:
		fmt.Fprintf(&b, "Replicate answered %d", e.StatusCode)
		if t := e.Title; t != "" {
			b.WriteString(" ")
			b.WriteString(t)
		} else if t := http.StatusText(e.StatusCode); t != "" {
			b.WriteString(" ")
			b.WriteString(t)
		}
	}
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	} else if e.Title == "" && len(e.Body) > 0 && !json.Valid(e.Body) {
		// A proxy's HTML or text error page: show its start, it is all we have.
		body := strings.Join(strings.Fields(string(e.Body)), " ")
		if len(body) > 200 {
			body = body[:200] + "…"
		}
		b.WriteString(": ")
		b.WriteString(body)
	}
	for _, f := range e.InvalidFields {
		b.WriteString("; ")
		if f.Field != "" {
			b.WriteString(f.Field)
			b.WriteString(": ")
		}
		if f.Description != "" {
			b.WriteString(f.Description)
		} else {
			b.WriteString(f.Type)
		}
	}
	return b.String()
}

// problem is the wire form of an error body.
type problem struct {
	Type          string          `json:"type"`
	Title         string          `json:"title"`
	Detail        string          `json:"detail"`
	Instance      string          `json:"instance"`
	Status        int             `json:"status"`
	InvalidFields []InvalidField  `json:"invalid_fields"`
	RetryAfter    json.RawMessage `json:"retry_after"`
}

// newAPIError builds an APIError from a response. A body that is not a
// problem object is kept in Body and otherwise ignored.
func newAPIError(endpoint string, resp *http.Response, body []byte, now time.Time) *APIError {
	if len(body) > maxErrorBody {
		body = body[:maxErrorBody]
	}
	e := &APIError{Endpoint: endpoint, StatusCode: resp.StatusCode, Body: body}
	var p problem
	if json.Unmarshal(body, &p) == nil {
		e.Type, e.Title, e.Detail, e.Instance, e.Status = p.Type, p.Title, p.Detail, p.Instance, p.Status
		e.InvalidFields = p.InvalidFields
		if d, ok := parseBodyRetryAfter(p.RetryAfter); ok {
			e.RetryAfter = d
		}
	}
	if d, ok := parseRetryAfterHeader(resp.Header.Get("Retry-After"), now); ok {
		e.RetryAfter = d
	}
	return e
}

// maxRetryAfterSeconds bounds a server's wait request so that converting
// it to a time.Duration cannot overflow; a day is far beyond any real one.
const maxRetryAfterSeconds = 24 * 60 * 60

// parseRetryAfterHeader reads Retry-After as seconds or as an HTTP date.
func parseRetryAfterHeader(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseFloat(v, 64); err == nil {
		if secs < 0 || secs > maxRetryAfterSeconds {
			return 0, false
		}
		return time.Duration(secs * float64(time.Second)), true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	d := t.Sub(now)
	if d < 0 {
		d = 0
	}
	return d, true
}

// parseBodyRetryAfter reads the body's retry_after: a number of seconds.
func parseBodyRetryAfter(raw json.RawMessage) (time.Duration, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false
	}
	var secs float64
	if err := json.Unmarshal(raw, &secs); err != nil {
		var s string
		if json.Unmarshal(raw, &s) != nil {
			return 0, false
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return 0, false
		}
		secs = f
	}
	if secs < 0 || secs > maxRetryAfterSeconds {
		return 0, false
	}
	return time.Duration(secs * float64(time.Second)), true
}

// StatusCode returns the HTTP status of the APIError in err's chain, or 0.
func StatusCode(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports whether Replicate answered 404.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// IsConflict reports whether Replicate answered 409 (a model name is taken).
func IsConflict(err error) bool { return StatusCode(err) == http.StatusConflict }

// IsUnauthorized reports whether Replicate refused the token (401).
func IsUnauthorized(err error) bool { return StatusCode(err) == http.StatusUnauthorized }

// IsRateLimited reports whether Replicate throttled the call (429) and the
// client gave up waiting; RetryAfter on the APIError says for how long.
func IsRateLimited(err error) bool { return StatusCode(err) == http.StatusTooManyRequests }

// IsInvalid reports whether Replicate refused the request body or version (422).
func IsInvalid(err error) bool { return StatusCode(err) == http.StatusUnprocessableEntity }

// IsOutcomeUnknown reports whether a create may or may not have taken effect.
func IsOutcomeUnknown(err error) bool { return errors.Is(err, ErrOutcomeUnknown) }
