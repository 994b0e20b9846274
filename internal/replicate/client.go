package replicate

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

// DefaultBaseURL is Replicate's API.
const DefaultBaseURL = "https://api.replicate.com/v1"

// Defaults for ClientOptions.
const (
	DefaultRateLimit     = 1000 // requests per minute; Replicate allows 3000
	DefaultTimeout       = 30 * time.Second
	DefaultMaxRetries    = 4 // so at most 5 requests per call, like Replicate's Go client
	DefaultMaxBackoff    = 30 * time.Second
	DefaultMaxRetryAfter = time.Minute
	minBackoff           = 500 * time.Millisecond
	// maxResponseBody bounds what is read of a response: training logs can
	// be megabytes, a list page holds 100 trainings.
	maxResponseBody = 64 << 20
)

// Endpoint names, as passed to ClientOptions.OnCall and set in APIError.
const (
	EndpointAccount         = "account.get"
	EndpointModelsGet       = "models.get"
	EndpointModelsCreate    = "models.create"
	EndpointTrainingsCreate = "trainings.create"
	EndpointTrainingsGet    = "trainings.get"
	EndpointTrainingsCancel = "trainings.cancel"
	EndpointTrainingsList   = "trainings.list"
	EndpointPredictionsGet  = "predictions.get"
	EndpointWebhookSecret   = "webhooks.default.secret.get"
)

// Outcomes of one HTTP attempt, as passed to ClientOptions.OnCall.
const (
	OutcomeOK       = "ok"
	Outcome4xx      = "4xx"
	Outcome429      = "429"
	Outcome5xx      = "5xx"
	OutcomeNetwork  = "network"  // no answer: refused, reset, timed out, unreadable
	OutcomeCanceled = "canceled" // the caller's context ended
)

// ClientOptions configure a Client. Only Token is required.
type ClientOptions struct {
	// BaseURL defaults to DefaultBaseURL. "/v1" is appended when the path
	// does not end with it, so "http://127.0.0.1:9000" and
	// "http://127.0.0.1:9000/v1" both work.
	BaseURL string
	// Token is sent as "Authorization: Bearer <Token>".
	Token string
	// HTTPClient defaults to a client with its own transport; its Timeout is
	// best left 0, Timeout below bounds each attempt.
	HTTPClient *http.Client
	// RateLimit is requests per minute for the default limiter
	// (DefaultRateLimit when 0). Ignored when Limiter is set.
	RateLimit int
	// Limiter paces every attempt, retries included. Supply one to share a
	// budget between clients; the default is a TokenBucket of RateLimit
	// with no burst.
	Limiter Limiter
	// Timeout bounds each HTTP attempt: sending, waiting and reading the
	// body (DefaultTimeout when 0). A call makes at most MaxRetries+1
	// attempts and waits at most MaxBackoff or MaxRetryAfter between them,
	// so every call ends in bounded time; ctx may end it sooner.
	Timeout time.Duration
	// Logger gets retries at debug and unknown statuses at warn.
	Logger *slog.Logger
	// OnCall is told of every attempt: the endpoint (EndpointTrainingsGet,
	// ...), the outcome (OutcomeOK, Outcome429, ...) and how long it took.
	OnCall func(endpoint, outcome string, d time.Duration)
	// MaxRetries is how many times a call is retried (DefaultMaxRetries
	// when 0; negative for none). Only these are retried: a 429 for any
	// call; a 5xx or a network error for GETs and cancels.
	MaxRetries int
	// MaxBackoff caps the exponential backoff (DefaultMaxBackoff when 0).
	MaxBackoff time.Duration
	// MaxRetryAfter is the longest a 429's Retry-After is waited out
	// (DefaultMaxRetryAfter when 0); a longer one is returned as an
	// *APIError with RetryAfter set, for the caller to schedule.
	MaxRetryAfter time.Duration
	// UserAgent defaults to "trainhook".
	UserAgent string

	// Now, Sleep and Jitter replace the clock and randomness in tests.
	// Sleep must return ctx's error when ctx ends first. Jitter returns a
	// duration in [0, max).
	Now    func() time.Time
	Sleep  func(ctx context.Context, d time.Duration) error
	Jitter func(max time.Duration) time.Duration
}

// Client calls Replicate's HTTP API. It is safe for concurrent use.
type Client struct {
	base          *url.URL // ends in /v1, no trailing slash
	token         string
	hc            *http.Client
	limiter       Limiter
	timeout       time.Duration
	log           *slog.Logger
	onCall        func(endpoint, outcome string, d time.Duration)
	maxRetries    int
	maxBackoff    time.Duration
	maxRetryAfter time.Duration
	userAgent     string
	now           func() time.Time
	sleep         func(context.Context, time.Duration) error
	jitter        func(time.Duration) time.Duration
}

// NewClient checks o and returns a Client.
func NewClient(o ClientOptions) (*Client, error) {
	if strings.TrimSpace(o.Token) == "" {
		return nil, errors.New("replicate: no API token: set REPLICATE_API_TOKEN (https://replicate.com/account/api-tokens)")
	}
	base, err := normalizeBaseURL(o.BaseURL)
	if err != nil {
		return nil, err
	}
	if o.RateLimit < 0 || o.Timeout < 0 || o.MaxBackoff < 0 || o.MaxRetryAfter < 0 {
		return nil, errors.New("replicate: RateLimit, Timeout, MaxBackoff and MaxRetryAfter must not be negative")
	}
	c := &Client{
		base:          base,
		token:         strings.TrimSpace(o.Token),
		hc:            o.HTTPClient,
		limiter:       o.Limiter,
		timeout:       orDefault(o.Timeout, DefaultTimeout),
		log:           o.Logger,
		onCall:        o.OnCall,
		maxRetries:    o.MaxRetries,
		maxBackoff:    orDefault(o.MaxBackoff, DefaultMaxBackoff),
		maxRetryAfter: orDefault(o.MaxRetryAfter, DefaultMaxRetryAfter),
		userAgent:     o.UserAgent,
		now:           o.Now,
		sleep:         o.Sleep,
		jitter:        o.Jitter,
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = DefaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.hc == nil {
		c.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.userAgent == "" {
		c.userAgent = "trainhook"
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.sleep == nil {
		c.sleep = sleepContext
	}
	if c.jitter == nil {
		c.jitter = func(max time.Duration) time.Duration {
			if max <= 0 {
				return 0
			}
			return rand.N(max)
		}
	}
	if c.limiter == nil {
		c.limiter = newTokenBucket(orDefault(o.RateLimit, DefaultRateLimit), 1, c.now, c.sleep)
	}
	return c, nil
}

func orDefault[T int | time.Duration](v, def T) T {
	if v == 0 {
		return def
	}
	return v
}

func normalizeBaseURL(s string) (*url.URL, error) {
	if strings.TrimSpace(s) == "" {
		s = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("replicate: base URL %q: %w", s, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("replicate: base URL %q must be an absolute http(s) URL such as %s", s, DefaultBaseURL)
	}
	u.Path = strings.TrimRight(u.Path, "/")
	if !strings.HasSuffix(u.Path, "/v1") {
		u.Path += "/v1"
	}
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u, nil
}

// CloseIdleConnections closes the client's idle keep-alive connections; a
// server that stops calls it so nothing of it stays open.
func (c *Client) CloseIdleConnections() { c.hc.CloseIdleConnections() }

// BaseURL returns the API root the client calls, ending in /v1, with any
// password in it replaced by xxxxx: it is for messages, never for requests.
func (c *Client) BaseURL() string { return c.base.Redacted() }

func (c *Client) url(segments ...string) string {
	var b strings.Builder
	b.WriteString(c.base.String())
	for _, s := range segments {
		b.WriteByte('/')
		b.WriteString(url.PathEscape(s))
	}
	return b.String()
}

// Account returns the account the token belongs to.
func (c *Client) Account(ctx context.Context) (Account, error) {
	var a Account
	err := c.do(ctx, call{endpoint: EndpointAccount, method: http.MethodGet, url: c.url("account")}, &a)
	return a, err
}

// GetModel returns a model; IsNotFound(err) when it does not exist or is not visible.
func (c *Client) GetModel(ctx context.Context, owner, name string) (Model, error) {
	if err := checkSegments(EndpointModelsGet, owner, name); err != nil {
		return Model{}, err
	}
	var m Model
	err := c.do(ctx, call{endpoint: EndpointModelsGet, method: http.MethodGet, url: c.url("models", owner, name)}, &m)
	return m, err
}

// LatestVersion returns the model's latest version, ErrNoVersion if it has none.
func (c *Client) LatestVersion(ctx context.Context, owner, name string) (ModelVersion, error) {
	m, err := c.GetModel(ctx, owner, name)
	if err != nil {
		return ModelVersion{}, err
	}
	if m.LatestVersion == nil || m.LatestVersion.ID == "" {
		return ModelVersion{}, fmt.Errorf("%s/%s: %w", owner, name, ErrNoVersion)
	}
	return *m.LatestVersion, nil
}

// CreateModel creates a model, for use as a training destination.
// IsConflict(err) when the name is taken (GET it and reuse it); an error
// wrapping ErrOutcomeUnknown when the answer was lost (GET it to find out).
func (c *Client) CreateModel(ctx context.Context, r CreateModelRequest) (Model, error) {
	body, err := json.Marshal(r)
	if err != nil {
		return Model{}, fmt.Errorf("%s: encode request: %w", EndpointModelsCreate, err)
	}
	var m Model
	err = c.do(ctx, call{endpoint: EndpointModelsCreate, method: http.MethodPost, url: c.url("models"), body: body, create: true}, &m)
	return m, err
}

// CreateTraining starts a training of trainer ("owner/name:version", the
// trainer model's version id is 64 hex digits) into r.Destination.
//
// It is never re-sent after it may have reached Replicate: when the answer
// is lost or is a 5xx the error wraps ErrOutcomeUnknown and the caller must
// find out by listing recent trainings (ListTrainings, newest first) and
// matching model, version, input and created_at; a 429 is retried, since a
// throttled request created nothing.
func (c *Client) CreateTraining(ctx context.Context, trainer string, r CreateTrainingRequest) (Training, error) {
	owner, name, version, err := parseTrainer(trainer)
	if err != nil {
		return Training{}, fmt.Errorf("%s: %w", EndpointTrainingsCreate, err)
	}
	if r.Input == nil {
		return Training{}, fmt.Errorf("%s: input is required (send an empty object for none)", EndpointTrainingsCreate)
	}
	if strings.TrimSpace(r.Destination) == "" {
		return Training{}, fmt.Errorf("%s: destination is required (owner/name of a model you own)", EndpointTrainingsCreate)
	}
	body, err := json.Marshal(r)
	if err != nil {
		return Training{}, fmt.Errorf("%s: encode request: %w", EndpointTrainingsCreate, err)
	}
	var t Training
	err = c.do(ctx, call{
		endpoint: EndpointTrainingsCreate, method: http.MethodPost,
		url:  c.url("models", owner, name, "versions", version, "trainings"),
		body: body, create: true,
	}, &t)
	if err == nil {
		c.checkStatus(EndpointTrainingsCreate, t)
	}
	return t, err
}

// parseTrainer splits "owner/name:version".
func parseTrainer(s string) (owner, name, version string, err error) {
	ref, version, ok := strings.Cut(strings.TrimSpace(s), ":")
	owner, name, ok2 := strings.Cut(ref, "/")
	if !ok || !ok2 || owner == "" || name == "" || version == "" || strings.ContainsAny(name, "/:") || strings.Contains(version, ":") {
		return "", "", "", fmt.Errorf("trainer %q is not owner/name:version (resolve the version with LatestVersion)", s)
	}
	return owner, name, version, nil
}

// GetTraining returns a training; IsNotFound(err) for an unknown id.
func (c *Client) GetTraining(ctx context.Context, id string) (Training, error) {
	return c.trainingCall(ctx, EndpointTrainingsGet, http.MethodGet, id, "trainings", id)
}

// ErrNoBudget is GetTrainingNow's answer when the API budget has no request
// free at once.
var ErrNoBudget = errors.New("the API budget has no request free now")

// GetTrainingNow is GetTraining if the rate limiter has a request free at
// once (its Limiter has TryWait), sent once; otherwise ErrNoBudget, and
// nothing is spent or reserved.
func (c *Client) GetTrainingNow(ctx context.Context, id string) (Training, error) {
	tl, ok := c.limiter.(interface{ TryWait(context.Context) bool })
	if !ok || !tl.TryWait(ctx) {
		return Training{}, ErrNoBudget
	}
	if err := checkSegments(EndpointTrainingsGet, id); err != nil {
		return Training{}, err
	}
	var t Training
	if err := c.do(ctx, call{endpoint: EndpointTrainingsGet, method: http.MethodGet, url: c.url("trainings", id), now: true}, &t); err != nil {
		return Training{}, err
	}
	c.checkStatus(EndpointTrainingsGet, t)
	return t, nil
}

// CancelTraining cancels a training and returns it. Cancel is idempotent, so
// it is retried like a GET.
func (c *Client) CancelTraining(ctx context.Context, id string) (Training, error) {
	return c.trainingCall(ctx, EndpointTrainingsCancel, http.MethodPost, id, "trainings", id, "cancel")
}

// GetPrediction returns a prediction. Trainings are predictions underneath,
// so a training id works too.
func (c *Client) GetPrediction(ctx context.Context, id string) (Training, error) {
	return c.trainingCall(ctx, EndpointPredictionsGet, http.MethodGet, id, "predictions", id)
}

func (c *Client) trainingCall(ctx context.Context, endpoint, method, id string, segments ...string) (Training, error) {
	if err := checkSegments(endpoint, id); err != nil {
		return Training{}, err
	}
	var t Training
	if err := c.do(ctx, call{endpoint: endpoint, method: method, url: c.url(segments...)}, &t); err != nil {
		return Training{}, err
	}
	c.checkStatus(endpoint, t)
	return t, nil
}

func checkSegments(endpoint string, segs ...string) error {
	for _, s := range segs {
		if strings.TrimSpace(s) == "" || strings.ContainsAny(s, "/?#") || s == "." || s == ".." {
			return fmt.Errorf("%s: %q is not a valid id or name", endpoint, s)
		}
	}
	return nil
}

// ListTrainings returns one page of the account's trainings, newest first.
// pageURL "" asks for the first page; pass Page.Next to get the next one.
// A page URL must point at the client's own API host, so that a forged
// "next" cannot send the token elsewhere.
func (c *Client) ListTrainings(ctx context.Context, pageURL string) (Page, error) {
	target := c.url("trainings")
	if pageURL != "" {
		u, err := c.base.Parse(pageURL)
		if err != nil {
			return Page{}, fmt.Errorf("%s: page URL %q: %w", EndpointTrainingsList, pageURL, err)
		}
		if u.Scheme != c.base.Scheme || u.Host != c.base.Host {
			return Page{}, fmt.Errorf("%s: page URL %q is not on %s://%s; refusing to send the token there", EndpointTrainingsList, pageURL, c.base.Scheme, c.base.Host)
		}
		target = u.String()
	}
	var p Page
	if err := c.do(ctx, call{endpoint: EndpointTrainingsList, method: http.MethodGet, url: target}, &p); err != nil {
		return Page{}, err
	}
	for _, t := range p.Results {
		c.checkStatus(EndpointTrainingsList, t)
	}
	return p, nil
}

// WebhookSecret returns the account's webhook signing key.
func (c *Client) WebhookSecret(ctx context.Context) (Key, error) {
	var s webhookSecret
	if err := c.do(ctx, call{endpoint: EndpointWebhookSecret, method: http.MethodGet, url: c.url("webhooks", "default", "secret")}, &s); err != nil {
		return Key{}, err
	}
	k, err := ParseKey(s.Key)
	if err != nil {
		return Key{}, fmt.Errorf("%s: %w", EndpointWebhookSecret, err)
	}
	return k, nil
}

// checkStatus logs a status trainhook does not know. It is not an error:
// Replicate adds statuses (aborted came late) and callers decide with
// Training.Terminal, which also looks at completed_at.
func (c *Client) checkStatus(endpoint string, t Training) {
	if !slices.Contains(training.RemoteStatuses, t.Status) {
		c.log.Warn("Replicate returned an unknown training status", "endpoint", endpoint, "training_id", t.ID, "status", t.Status)
	}
}

// call is one API call, which may take several attempts.
type call struct {
	endpoint string
	method   string
	url      string
	body     []byte
	// create marks a POST that creates something: once it may have reached
	// Replicate it is never sent again.
	create bool
	// now marks a call made only if the limiter had a slot free at once,
	// which the caller took (TryWait): it is sent once, not retried.
	now bool
}

// do runs a call: it waits for the limiter, sends, retries what is safe to
// retry, and decodes a 2xx body into out.
func (c *Client) do(ctx context.Context, cl call, out any) error {
	for attempt := 0; ; attempt++ {
		if !cl.now {
			if err := c.limiter.Wait(ctx); err != nil {
				return fmt.Errorf("%s: waiting for the rate limit: %w", cl.endpoint, err)
			}
		}
		wait, retry, err := c.attempt(ctx, cl, attempt, out)
		if err == nil {
			return nil
		}
		if !retry || cl.now || attempt >= c.maxRetries {
			return err
		}
		c.log.Debug("retrying Replicate call", "endpoint", cl.endpoint, "attempt", attempt+1, "wait", wait, "err", err)
		if serr := c.sleep(ctx, wait); serr != nil {
			return fmt.Errorf("%s: waiting to retry (%w): %w", cl.endpoint, serr, err)
		}
	}
}

// attempt sends one request. It returns the error and, when the call may
// be retried, how long to wait first.
func (c *Client) attempt(ctx context.Context, cl call, n int, out any) (wait time.Duration, retry bool, err error) {
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	var body io.Reader
	if cl.body != nil {
		body = bytes.NewReader(cl.body)
	}
	req, err := http.NewRequestWithContext(actx, cl.method, cl.url, body)
	if err != nil {
		return 0, false, fmt.Errorf("%s: build request: %w", cl.endpoint, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", c.userAgent)
	if cl.body != nil {
		req.Header.Set("Content-Type", "application/json")
	}

	start := c.now()
	resp, err := c.hc.Do(req)
	var data []byte
	if err == nil {
		data, err = io.ReadAll(io.LimitReader(resp.Body, maxResponseBody+1))
		resp.Body.Close()
		if err == nil && len(data) > maxResponseBody {
			err = fmt.Errorf("response body larger than %d bytes", maxResponseBody)
		}
	}
	elapsed := c.now().Sub(start)

	if err != nil {
		sent := resp != nil || !neverSent(err)
		if ctx.Err() != nil {
			c.report(cl.endpoint, OutcomeCanceled, elapsed)
			if cl.create && sent {
				return 0, false, fmt.Errorf("%s: %w: %w", cl.endpoint, ErrOutcomeUnknown, ctx.Err())
			}
			return 0, false, fmt.Errorf("%s: %w", cl.endpoint, ctx.Err())
		}
		c.report(cl.endpoint, OutcomeNetwork, elapsed)
		switch {
		case cl.create && sent:
			return 0, false, fmt.Errorf("%s: %w: %w", cl.endpoint, ErrOutcomeUnknown, err)
		case cl.create:
			return 0, false, fmt.Errorf("%s: request not sent (safe to retry): %w", cl.endpoint, err)
		}
		return c.backoff(n), true, fmt.Errorf("%s: %w", cl.endpoint, err)
	}

	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
		c.report(cl.endpoint, OutcomeOK, elapsed)
		if out == nil {
			return 0, false, nil
		}
		if err := json.Unmarshal(data, out); err != nil {
			err = fmt.Errorf("%s: decode %d response: %w", cl.endpoint, code, err)
			if cl.create {
				return 0, false, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
			}
			return 0, false, err
		}
		return 0, false, nil
	case code == http.StatusTooManyRequests:
		c.report(cl.endpoint, Outcome429, elapsed)
		apiErr := newAPIError(cl.endpoint, resp, data, c.now())
		wait := apiErr.RetryAfter
		if wait == 0 {
			wait = c.backoff(n)
		}
		// Nothing was done, so even a create may be sent again, unless the
		// server wants us gone for longer than we are willing to wait.
		return wait, wait <= c.maxRetryAfter, apiErr
	case code >= 500:
		c.report(cl.endpoint, Outcome5xx, elapsed)
		apiErr := newAPIError(cl.endpoint, resp, data, c.now())
		if cl.create {
			return 0, false, fmt.Errorf("%w: %w", ErrOutcomeUnknown, apiErr)
		}
		return c.backoff(n), true, apiErr
	default:
		c.report(cl.endpoint, Outcome4xx, elapsed)
		return 0, false, newAPIError(cl.endpoint, resp, data, c.now())
	}
}

// backoff is the wait before retry n+1: 500 ms doubling, capped at
// maxBackoff, of which the upper half is random ("equal jitter") so that
// clients that failed together do not retry together.
func (c *Client) backoff(n int) time.Duration {
	d := c.maxBackoff
	if n < 16 && minBackoff<<n < d {
		d = minBackoff << n
	}
	return d/2 + c.jitter(d/2)
}

func (c *Client) report(endpoint, outcome string, d time.Duration) {
	if c.onCall != nil {
		c.onCall(endpoint, outcome, d)
	}
}

// neverSent reports whether err happened before a request could leave: the
// connection was never made, so a create may safely be sent again.
func neverSent(err error) bool {
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return true
	}
	var opErr *net.OpError
	return errors.As(err, &opErr) && opErr.Op == "dial"
}
