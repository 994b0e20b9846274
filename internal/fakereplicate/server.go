// Package fakereplicate is a local simulator of Replicate's HTTP API for
// trainings: models, trainings that run on a schedule, signed webhooks with
// Replicate's retry rules, rate limits, and injectable faults. Tests start
// it in-process; `trainhook fake-replicate` runs it standalone. It only
// listens on and delivers webhooks to loopback addresses. trainhook itself
// never imports it.
package fakereplicate

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
)

// Defaults for Options.
const (
	DefaultUsername           = "trainhook-sim"
	DefaultDuration           = 20 * time.Second
	DefaultWebhookRetryWindow = time.Minute
	DefaultWebhookTimeout     = 5 * time.Second
	// MinLogsInterval is Replicate's throttle of output and logs webhooks.
	MinLogsInterval = 500 * time.Millisecond
	// NominalRateLimit is Replicate's limit for the endpoints simulated here
	// (requests per minute); the ratelimit-* headers count against it when
	// the simulator itself is not limiting.
	NominalRateLimit = 3000
)

// Options configure a Server. The zero value is a working simulator:
// any Bearer token, a random signing key, 20 s trainings that all succeed,
// no faults, no rate limit.
type Options struct {
	// Token, when set, is the only API token accepted; when empty any
	// non-empty Bearer token is.
	Token string
	// Username owns the account (DefaultUsername when empty).
	Username string
	// Secret is the webhook signing key, "whsec_<base64>"; random when empty.
	Secret string
	// Seed makes ids, outcomes, hashes and fault dice reproducible for the
	// same sequence of requests; 0 picks a random seed.
	Seed uint64
	// Duration is a training's whole run from creation to its end
	// (DefaultDuration when 0): the first 5-15% is spent "starting"
	// (queued), the rest "processing".
	Duration time.Duration
	// Faults are the initial fault settings, including the fail and abort
	// rates; change them later with SetFaults.
	Faults Faults
	// WebhookRetryWindow is how long a terminal webhook is retried after
	// its first attempt (DefaultWebhookRetryWindow when 0).
	WebhookRetryWindow time.Duration
	// WebhookTimeout bounds each delivery attempt (DefaultWebhookTimeout).
	WebhookTimeout time.Duration
	// LogsInterval is how often a running training with the "logs" event
	// sends its logs; never less than MinLogsInterval.
	LogsInterval time.Duration
	// Clock defaults to the real clock; tests pass a ManualClock.
	Clock Clock
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Faults are the simulator's injected failures. Every rate is a
// probability in [0, 1]. In JSON (GET and POST /_sim/faults) the members
// are fail_rate, abort_rate, drop_webhooks, dup_webhooks,
// reorder_webhooks, delay_webhooks (a duration string such as "1.5s"),
// api_error_rate, rate_limit and retry_after_header.
type Faults struct {
	// FailRate and AbortRate decide the outcome of each new training:
	// failed (with a realistic error, part-way through) or aborted (ended
	// while queued, never started).
	FailRate  float64
	AbortRate float64
	// DropWebhooks: a message is never sent (terminal ones included).
	DropWebhooks float64
	// DupWebhooks: a message is sent twice, with the same webhook-id.
	DupWebhooks float64
	// ReorderWebhooks delays every message by a random 0–2 s, so messages
	// of one training can arrive out of order.
	ReorderWebhooks bool
	// DelayWebhooks delays every message's first attempt.
	DelayWebhooks time.Duration
	// APIErrorRate answers API calls with 500, 502 or 503. For a POST the
	// fault strikes either before the request is handled or after it (the
	// training exists but the answer is lost), half the time each.
	APIErrorRate float64
	// RateLimit is requests per minute over a sliding 60 s window, beyond
	// which calls get 429; 0 means no limit.
	RateLimit int
	// RetryAfterHeader adds a Retry-After header to 429s; Replicate is only
	// known to send the body's retry_after.
	RetryAfterHeader bool
}

func (f Faults) validate() error {
	for name, v := range map[string]float64{
		"fail rate": f.FailRate, "abort rate": f.AbortRate, "drop rate": f.DropWebhooks,
		"duplicate rate": f.DupWebhooks, "API error rate": f.APIErrorRate,
	} {
		if v < 0 || v > 1 {
			return fmt.Errorf("%s %v is not a probability between 0 and 1", name, v)
		}
	}
	if f.FailRate+f.AbortRate > 1 {
		return fmt.Errorf("fail rate %v plus abort rate %v is more than 1", f.FailRate, f.AbortRate)
	}
	if f.DelayWebhooks < 0 || f.RateLimit < 0 {
		return errors.New("webhook delay and rate limit must not be negative")
	}
	return nil
}

// FailSpec makes the next Count API calls to Endpoint ("" for any; names
// as in Stats, e.g. "trainings.get") fail with Status. With After the call
// is handled first and its answer replaced (the "lost response" of a
// create). A 429 carries retry_after RetryAfter seconds (default 1).
type FailSpec struct {
	Endpoint   string `json:"endpoint"`
	Status     int    `json:"status"`
	Count      int    `json:"count"`
	After      bool   `json:"after"`
	RetryAfter int    `json:"retry_after"`
}

// Server is one simulated Replicate.
type Server struct {
	opts     Options
	clock    Clock
	key      replicate.Key
	log      *slog.Logger
	handler  http.Handler
	interval time.Duration // logs webhook interval

	mu         sync.Mutex
	rng        *mrand.Rand
	faults     Faults
	failNext   []FailSpec
	models     map[string]*model
	trainings  []*simTraining // in creation order; index is seq
	byID       map[string]*simTraining
	stats      statsState
	limitWin   window // accepted requests, for the rate limit
	allWin     window // every request, for Stats.MaxPerMinute
	deliveries []Delivery
	queue      eventQueue

	active int        // delivery attempts launched and not yet ended
	idle   *sync.Cond // signaled when active drops to 0

	wake     chan struct{}
	settle   chan chan struct{}
	done     chan struct{}
	loopDone chan struct{}
	hooks    *http.Client
	hookCtx  context.Context
	hookStop context.CancelFunc
	sem      chan struct{}
	inflight sync.WaitGroup

	closeOnce sync.Once
	httpSrv   *http.Server
	baseURL   string
}

// New builds a simulator and starts its scheduler. Serve it with Start or
// mount Handler; stop it with Close.
func New(o Options) (*Server, error) {
	if o.Username == "" {
		o.Username = DefaultUsername
	}
	if o.Duration == 0 {
		o.Duration = DefaultDuration
	}
	if o.Duration < 0 || o.WebhookRetryWindow < 0 || o.WebhookTimeout < 0 {
		return nil, errors.New("fakereplicate: durations must not be negative")
	}
	if o.WebhookRetryWindow == 0 {
		o.WebhookRetryWindow = DefaultWebhookRetryWindow
	}
	if o.WebhookTimeout == 0 {
		o.WebhookTimeout = DefaultWebhookTimeout
	}
	if o.Clock == nil {
		o.Clock = realClock{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := o.Faults.validate(); err != nil {
		return nil, fmt.Errorf("fakereplicate: %w", err)
	}
	seed := o.Seed
	if seed == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		seed = binary.LittleEndian.Uint64(b[:]) | 1
	}
	rng := mrand.New(mrand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

	var key replicate.Key
	if o.Secret != "" {
		k, err := replicate.ParseKey(o.Secret)
		if err != nil {
			return nil, fmt.Errorf("fakereplicate: secret: %w", err)
		}
		key = k
	} else {
		raw := make([]byte, 24)
		if o.Seed != 0 {
			for i := range raw {
				raw[i] = byte(rng.Uint32())
			}
		} else {
			_, _ = rand.Read(raw)
		}
		key = replicate.NewKey(raw)
	}

	s := &Server{
		opts:     o,
		clock:    o.Clock,
		key:      key,
		log:      o.Logger,
		interval: max(o.LogsInterval, MinLogsInterval),
		rng:      rng,
		faults:   o.Faults,
		models:   map[string]*model{},
		byID:     map[string]*simTraining{},
		wake:     make(chan struct{}, 1),
		settle:   make(chan chan struct{}),
		done:     make(chan struct{}),
		loopDone: make(chan struct{}),
		sem:      make(chan struct{}, 64),
	}
	s.idle = sync.NewCond(&s.mu)
	s.stats.reset()
	s.seedModels()
	s.hookCtx, s.hookStop = context.WithCancel(context.Background())
	s.hooks = newWebhookClient(o.WebhookTimeout)
	s.handler = s.routes()
	go s.loop()
	return s, nil
}

// Start listens on addr (host:port; port 0 picks a free one) and serves in
// the background. It returns the base URL, e.g. "http://127.0.0.1:9000".
// Only loopback addresses are accepted: the simulator is for one machine.
func (s *Server) Start(addr string) (string, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("fakereplicate: address %q: %w", addr, err)
	}
	if !IsLoopbackHost(host) {
		return "", fmt.Errorf("fakereplicate: address %q is not a loopback address; use 127.0.0.1, [::1] or localhost", addr)
	}
	s.mu.Lock()
	started := s.httpSrv != nil
	s.mu.Unlock()
	if started {
		return "", errors.New("fakereplicate: already started")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("fakereplicate: listen: %w", err)
	}
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	s.mu.Lock()
	s.httpSrv = srv
	s.baseURL = "http://" + ln.Addr().String()
	s.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("fake-replicate stopped serving", "err", err)
		}
	}()
	return "http://" + ln.Addr().String(), nil
}

// BaseURL is the URL Start returned ("" before Start).
func (s *Server) BaseURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.baseURL
}

// Handler serves the API under /v1/ and the control surface under /_sim/.
func (s *Server) Handler() http.Handler { return s.handler }

// Key is the webhook signing key.
func (s *Server) Key() replicate.Key { return s.key }

// Username is the simulated account's name.
func (s *Server) Username() string { return s.opts.Username }

// Close stops serving, stops the scheduler and abandons pending webhook
// deliveries. It waits for deliveries in flight to end.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		s.hookStop()
		s.mu.Lock()
		srv := s.httpSrv
		s.mu.Unlock()
		if srv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			if e := srv.Shutdown(ctx); e != nil {
				err = srv.Close()
			}
		}
		<-s.loopDone
		s.inflight.Wait()
		s.hooks.CloseIdleConnections()
	})
	return err
}

// IsLoopbackHost reports whether host (no port) is localhost or a loopback IP.
func IsLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// routes lists every route.
func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(pattern, endpoint string, h http.HandlerFunc) {
		mux.Handle(pattern, s.api(endpoint, h))
	}
	api("GET /v1/account", "account.get", s.handleAccount)
	api("POST /v1/models", "models.create", s.handleCreateModel)
	api("GET /v1/models/{owner}/{name}", "models.get", s.handleGetModel)
	api("GET /v1/models/{owner}/{name}/versions", "models.versions.list", s.handleListVersions)
	api("GET /v1/models/{owner}/{name}/versions/{version}", "models.versions.get", s.handleGetVersion)
	api("POST /v1/models/{owner}/{name}/versions/{version}/trainings", "trainings.create", s.handleCreateTraining)
	api("GET /v1/trainings", "trainings.list", s.handleListTrainings)
	api("GET /v1/trainings/{id}", "trainings.get", s.handleGetTraining(viewGet))
	api("POST /v1/trainings/{id}/cancel", "trainings.cancel", s.handleCancel(viewGet))
	api("GET /v1/predictions/{id}", "predictions.get", s.handleGetTraining(viewPrediction))
	api("POST /v1/predictions/{id}/cancel", "predictions.cancel", s.handleCancel(viewPrediction))
	api("GET /v1/webhooks/default/secret", "webhooks.default.secret.get", s.handleSecret)
	api("/v1/", "unknown", func(w http.ResponseWriter, r *http.Request) { writeNotFound(w) })

	mux.HandleFunc("GET /_sim/{$}", s.handleSimIndex)
	mux.HandleFunc("GET /_sim/trainings", s.handleSimTrainings)
	mux.HandleFunc("GET /_sim/trainings/{id}", s.handleSimTraining)
	mux.HandleFunc("POST /_sim/trainings/{id}/complete", s.handleSimComplete)
	mux.HandleFunc("GET /_sim/deliveries", s.handleSimDeliveries)
	mux.HandleFunc("GET /_sim/stats", s.handleSimStats)
	mux.HandleFunc("POST /_sim/reset", s.handleSimReset)
	mux.HandleFunc("GET /_sim/faults", s.handleSimFaults)
	mux.HandleFunc("POST /_sim/faults", s.handleSimSetFaults)
	mux.HandleFunc("POST /_sim/fail-next", s.handleSimFailNext)
	return mux
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// discardWriter runs a handler whose answer is then "lost".
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}

// api wraps an API handler in what every Replicate call goes through, in
// this order: counting, authentication, the rate limit, injected faults.
func (s *Server) api(endpoint string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		s.serveAPI(endpoint, sw, r, h)
		if sw.code == 0 {
			sw.code = http.StatusOK
		}
		s.mu.Lock()
		s.stats.record(endpoint, sw.code)
		s.mu.Unlock()
	})
}

func (s *Server) serveAPI(endpoint string, w http.ResponseWriter, r *http.Request, h http.HandlerFunc) {
	authorized := s.authorized(r)

	s.mu.Lock()
	now := s.clock.Now()
	s.stats.Requests++
	if n := s.allWin.add(now); n > s.stats.MaxPerMinute {
		s.stats.MaxPerMinute = n
	}
	limit := s.faults.RateLimit
	nominal := limit
	if nominal == 0 {
		nominal = NominalRateLimit
	}
	throttled, retryAfter := false, 0
	if authorized && limit > 0 && s.limitWin.count(now) >= limit {
		throttled, retryAfter = true, s.limitWin.secondsUntilFree(now)
	} else if authorized {
		s.limitWin.add(now)
	}
	remaining := max(0, nominal-s.limitWin.count(now))
	reset := s.limitWin.secondsUntilFree(now)
	headerRetryAfter := s.faults.RetryAfterHeader
	var fault *FailSpec
	if authorized && !throttled {
		fault = s.pickFault(endpoint, r.Method)
	}
	if throttled {
		s.stats.Throttled++
	}
	s.mu.Unlock()

	w.Header().Set("ratelimit-remaining", fmt.Sprint(remaining))
	w.Header().Set("ratelimit-reset", fmt.Sprint(reset))
	switch {
	case !authorized:
		writeProblem(w, http.StatusUnauthorized, problem{Title: "Unauthenticated", Detail: "You did not pass a valid authentication token"})
	case throttled:
		writeThrottled(w, retryAfter, headerRetryAfter)
	case fault != nil && !fault.After:
		s.writeFault(w, fault, headerRetryAfter)
	case fault != nil:
		h(&discardWriter{h: http.Header{}}, r)
		s.writeFault(w, fault, headerRetryAfter)
	default:
		h(w, r)
	}
}

// authorized checks the Authorization header: "Bearer <token>" (or the
// older "Token <token>").
func (s *Server) authorized(r *http.Request) bool {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	if !ok || tok == "" || !(strings.EqualFold(scheme, "Bearer") || strings.EqualFold(scheme, "Token")) {
		return false
	}
	if s.opts.Token == "" {
		return true
	}
	return subtle.ConstantTimeCompare([]byte(tok), []byte(s.opts.Token)) == 1
}

// pickFault decides whether this call fails. s.mu is held.
func (s *Server) pickFault(endpoint, method string) *FailSpec {
	for i := range s.failNext {
		f := &s.failNext[i]
		if f.Endpoint != "" && f.Endpoint != endpoint {
			continue
		}
		spec := *f
		f.Count--
		if f.Count <= 0 {
			s.failNext = append(s.failNext[:i], s.failNext[i+1:]...)
		}
		s.stats.InjectedErrors++
		return &spec
	}
	if s.faults.APIErrorRate > 0 && s.rng.Float64() < s.faults.APIErrorRate {
		codes := []int{http.StatusInternalServerError, http.StatusBadGateway, http.StatusServiceUnavailable}
		spec := &FailSpec{Status: codes[s.rng.IntN(len(codes))], Count: 1}
		spec.After = method != http.MethodGet && s.rng.IntN(2) == 0
		s.stats.InjectedErrors++
		return spec
	}
	return nil
}

func (s *Server) writeFault(w http.ResponseWriter, f *FailSpec, headerRetryAfter bool) {
	switch f.Status {
	case http.StatusTooManyRequests:
		writeThrottled(w, max(f.RetryAfter, 1), headerRetryAfter)
	case http.StatusBadGateway:
		// What a proxy in front of an API answers: HTML, not problem+json.
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(f.Status)
		fmt.Fprint(w, "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n")
	default:
		writeProblem(w, f.Status, problem{Title: http.StatusText(f.Status), Detail: "The simulator injected this error (fault injection)."})
	}
}

func writeThrottled(w http.ResponseWriter, retryAfter int, header bool) {
	if header {
		w.Header().Set("Retry-After", fmt.Sprint(retryAfter))
	}
	writeProblem(w, http.StatusTooManyRequests, problem{
		Detail:     fmt.Sprintf("Request was throttled. Your rate limit resets in ~%ds.", retryAfter),
		RetryAfter: &retryAfter,
	})
}

// Faults returns the current fault settings.
func (s *Server) Faults() Faults {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.faults
}

// SetFaults replaces the fault settings; new trainings and deliveries use them.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = f
	return nil
}

// FailNext queues an injected failure (see FailSpec).
func (s *Server) FailNext(f FailSpec) error {
	if f.Status < 400 || f.Status > 599 {
		return fmt.Errorf("status %d is not an HTTP error status", f.Status)
	}
	if f.Count <= 0 {
		f.Count = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failNext = append(s.failNext, f)
	return nil
}
