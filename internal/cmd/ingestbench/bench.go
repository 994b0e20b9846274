package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/trainhook/trainhook/internal/config"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/training"
)

// Paths of the trainhook API the bench uses.
const (
	pathModels = "/api/models"
)

// Options configure one bench run.
type Options struct {
	URL          string        // trainhook's base URL; its host must be loopback
	Key          replicate.Key // signs the deliveries; the server must accept it
	Token        string        // TRAINHOOK_API_TOKEN of the server, if it has one
	N            int           // deliveries, one per model
	Concurrency  int           // requests in flight at once, in every phase
	PayloadBytes int           // size of each delivery body
	PID          int           // the server's process id, for RSS and CPU figures; 0 = none
	DurationMax  time.Duration // hard bound on the whole run
	Order        string        // OrderRegistration (default) or OrderRandom
	TrainingIDs  string        // IDsSortable (default) or IDsRandom
	Log          io.Writer     // progress lines; nil = none
	// NotifyAddr, when set, is a loopback HOST:PORT to receive the
	// server's notifications on (its TRAINHOOK_NOTIFY_URL), verified with
	// NotifyKeys (its TRAINHOOK_NOTIFY_SECRET): the run then also waits
	// until every model was notified model.ready, and reports the lag.
	NotifyAddr string
	NotifyKeys replicate.Keys
}

// The order deliveries are sent in. In registration order each batch the
// server commits touches neighbouring rows and index entries; trainings
// that end in an order of their own (as real ones do) touch pages all over
// the database, and a SQLite commit writes each page it dirtied.
const (
	OrderRegistration = "registration"
	OrderRandom       = "random" // a fixed shuffle (seed 1), so runs compare
)

// The training ids the bench registers. Sortable ids (trainhook's own
// ULIDs) are made in time order, so the models' training_id index gains
// them at its end, next to each other. Replicate's ids are random: in a
// database that already holds many models, each delivery's lookup by
// training id then lands anywhere in that index, as in production.
const (
	IDsSortable = "sortable"
	IDsRandom   = "random"
)

// Result is what a run measured. Durations are in seconds and latencies in
// milliseconds, so the JSON needs no unit conversion.
type Result struct {
	URL          string `json:"url"`
	N            int    `json:"n"`
	Concurrency  int    `json:"concurrency"`
	PayloadBytes int    `json:"payload_bytes"` // actual size of each body
	Order        string `json:"order"`
	TrainingIDs  string `json:"training_ids"`

	RegisterSeconds float64 `json:"register_seconds"`
	Registered      int     `json:"registered"`

	Sent             int            `json:"sent"`
	OK               int            `json:"ok"`     // 2xx answers
	Failed           int            `json:"failed"` // everything else
	Errors           map[string]int `json:"errors,omitempty"`
	FirstError       string         `json:"first_error,omitempty"`
	Seconds          float64        `json:"seconds"`            // wall time of the delivery phase
	DeliveriesPerSec float64        `json:"deliveries_per_sec"` // 2xx answers per second
	Latency          Latency        `json:"latency_ms"`

	Server           *ServerStats `json:"server,omitempty"`
	ClientCPUSeconds float64      `json:"client_cpu_seconds"` // the bench's own CPU during deliveries

	Verify   Verify       `json:"verify"`
	Notify   *NotifyStats `json:"notify,omitempty"`
	TimedOut bool         `json:"timed_out,omitempty"`
}

// Latency percentiles of the deliveries that got an answer, in milliseconds.
type Latency struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	P99 float64 `json:"p99"`
	Max float64 `json:"max"`
}

// ServerStats are read from /proc for the server's PID.
type ServerStats struct {
	PID int `json:"pid"`
	// PeakRSSBytes is VmHWM at the end of the run: the peak over the
	// process's life, which includes start-up and model registration.
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// CPUSeconds is user+system CPU the server used during the delivery phase.
	CPUSeconds        float64 `json:"cpu_seconds"`
	CPUSecondsPer1000 float64 `json:"cpu_seconds_per_1000"`
	// ReadKiBPerDelivery and WrittenKiBPerDelivery are what the server read
	// and wrote through system calls during the delivery phase, per
	// delivery: the request and answer on the socket, the WAL, and the
	// database pages SQLite's cache did not hold. Absent when /proc/PID/io
	// cannot be read (another user's process).
	ReadKiBPerDelivery    float64 `json:"read_kib_per_delivery,omitempty"`
	WrittenKiBPerDelivery float64 `json:"written_kib_per_delivery,omitempty"`
}

// Verify is what reading every model back found.
type Verify struct {
	Checked  int            `json:"checked"`
	Ready    int            `json:"ready"` // Ready with the delivered output
	ByStatus map[string]int `json:"by_status,omitempty"`
	Problems []string       `json:"problems,omitempty"` // the first few
}

// Passed reports whether every delivery was accepted and every model is
// Ready with its output.
func (r Result) Passed() bool {
	return !r.TimedOut && r.N > 0 && r.OK == r.N && r.Failed == 0 && r.Verify.Checked == r.N && r.Verify.Ready == r.N &&
		(r.Notify == nil || r.Notify.Notified == r.N && r.Notify.FailedVerification == 0)
}

// maxProblems is how many verification problems a Result keeps.
const maxProblems = 10

// checkURL parses the base URL and refuses any host that is not loopback:
// the bench must never send load to another machine.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(strings.TrimRight(raw, "/"))
	if err != nil {
		return nil, fmt.Errorf("--url %q: %w", raw, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("--url %q: want http://HOST:PORT of a local trainhook serve, such as http://127.0.0.1:8080", raw)
	}
	if !loopbackHost(u.Hostname()) {
		return nil, fmt.Errorf("--url %q: refusing to send load to %s: only loopback hosts (127.0.0.0/8, ::1, localhost) are allowed", raw, u.Hostname())
	}
	return u, nil
}

func loopbackHost(h string) bool {
	if strings.EqualFold(h, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.Zone() == "" && a.Unmap().IsLoopback()
}

// hostPort is the address a URL dials, with the scheme's default port.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// dialer returns a dial function that reaches only base's host and port,
// and only over loopback.
func dialer(base *url.URL) func(ctx context.Context, network, addr string) (net.Conn, error) {
	allowed := hostPort(base)
	d := &net.Dialer{
		Timeout:   5 * time.Second,
		KeepAlive: 30 * time.Second,
		// Checked on the resolved address, so "localhost" cannot lead off the machine.
		Control: func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if err != nil {
				return err
			}
			if a, err := netip.ParseAddr(host); err != nil || !a.Unmap().IsLoopback() {
				return fmt.Errorf("refusing to connect to %s: not a loopback address", address)
			}
			return nil
		},
	}
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != allowed {
			return nil, fmt.Errorf("refusing to dial %s: ingestbench only talks to %s", addr, allowed)
		}
		return d.DialContext(ctx, network, addr)
	}
}

// newClient returns a client that can only reach base's host and port, only
// over loopback, never through a proxy and never following redirects, with
// room in its idle pool for every worker's connection.
func newClient(base *url.URL, concurrency int) *http.Client {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer(base),
		MaxIdleConns:          concurrency + 4,
		MaxIdleConnsPerHost:   concurrency + 4, // the default of 2 would close and redial most connections
		MaxConnsPerHost:       concurrency,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: time.Minute,
		DisableCompression:    true,
	}
	return &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Run registers N models, delivers one signed `succeeded` webhook for each
// while measuring, and reads every model back. It returns an error when the
// run could not be carried out (bad options, registration refused, time up);
// a run that completed but found problems returns a Result whose Passed is
// false and a nil error.
func Run(ctx context.Context, o Options) (Result, error) {
	base, err := checkURL(o.URL)
	if err != nil {
		return Result{}, err
	}
	switch {
	case o.N < 1:
		return Result{}, errors.New("--n must be at least 1")
	case o.Concurrency < 1:
		return Result{}, errors.New("--concurrency must be at least 1")
	case o.PayloadBytes < 0 || o.PayloadBytes > 64<<20:
		return Result{}, errors.New("--payload-bytes must be from 0 to 64MiB")
	case o.DurationMax <= 0:
		return Result{}, errors.New("--duration-max must be positive")
	}
	switch o.Order {
	case "":
		o.Order = OrderRegistration
	case OrderRegistration, OrderRandom:
	default:
		return Result{}, fmt.Errorf("--order %q: want %s or %s", o.Order, OrderRegistration, OrderRandom)
	}
	switch o.TrainingIDs {
	case "":
		o.TrainingIDs = IDsSortable
	case IDsSortable, IDsRandom:
	default:
		return Result{}, fmt.Errorf("--training-ids %q: want %s or %s", o.TrainingIDs, IDsSortable, IDsRandom)
	}
	if o.PID != 0 {
		if _, err := procCPU(o.PID); err != nil {
			return Result{}, fmt.Errorf("--pid %d: %w", o.PID, err)
		}
	}
	logf := func(format string, args ...any) {
		if o.Log != nil {
			fmt.Fprintf(o.Log, format+"\n", args...)
		}
	}
	var rc *notifyReceiver
	if o.NotifyAddr != "" {
		if rc, err = startNotifyReceiver(o.NotifyAddr, o.NotifyKeys); err != nil {
			return Result{}, err
		}
		defer rc.close()
	}
	ctx, cancel := context.WithTimeout(ctx, o.DurationMax)
	defer cancel()

	b := &bench{o: o, base: strings.TrimRight(base.String(), "/"), client: newClient(base, o.Concurrency),
		addr: hostPort(base), dial: dialer(base), prefix: strings.TrimRight(base.EscapedPath(), "/")}
	defer b.client.CloseIdleConnections()
	pl, err := newPayload(o.PayloadBytes, b.base+config.WebhookPath, time.Now())
	if err != nil {
		return Result{}, err
	}
	res := Result{URL: b.base, N: o.N, Concurrency: o.Concurrency, PayloadBytes: pl.size, Order: o.Order, TrainingIDs: o.TrainingIDs}

	// 1. Register one model per delivery (not timed).
	now := time.Now()
	b.trainingIDs = make([]string, o.N)
	ids := rand.New(rand.NewPCG(uint64(now.UnixNano()), 2)) // unlike a seeded database's
	for i := range b.trainingIDs {
		if o.TrainingIDs == IDsRandom {
			b.trainingIDs[i] = replicateID(ids)
		} else {
			b.trainingIDs[i] = training.NewID(now)
		}
	}
	b.modelIDs = make([]string, o.N)
	b.sendOrder = make([]int, o.N)
	for i := range b.sendOrder {
		b.sendOrder[i] = i
	}
	if o.Order == OrderRandom {
		rand.New(rand.NewPCG(1, 1)).Shuffle(o.N, func(i, j int) {
			b.sendOrder[i], b.sendOrder[j] = b.sendOrder[j], b.sendOrder[i]
		})
	}
	logf("registering %d models...", o.N)
	start := time.Now()
	regErr := b.parallel(ctx, b.register)
	res.RegisterSeconds = time.Since(start).Seconds()
	for _, id := range b.modelIDs {
		if id != "" {
			res.Registered++
		}
	}
	if regErr != nil {
		if res.TimedOut = ctx.Err() != nil; res.TimedOut {
			return res, fmt.Errorf("--duration-max %s reached while registering models (%d of %d registered)", o.DurationMax, res.Registered, o.N)
		}
		return res, fmt.Errorf("registering models: %w", regErr)
	}

	// 2. Deliver, timed.
	logf("sending %d deliveries of %d bytes, %d at a time...", o.N, pl.size, o.Concurrency)
	var cpu0 time.Duration
	var read0, written0 int64
	var ioErr error
	if o.PID != 0 {
		cpu0, _ = procCPU(o.PID)
		read0, written0, ioErr = procIO(o.PID)
	}
	self0 := selfCPU()
	d := b.deliver(ctx, pl)
	res.ClientCPUSeconds = (selfCPU() - self0).Seconds()
	res.Sent, res.OK, res.Failed, res.Errors, res.FirstError = d.sent, d.ok, d.failed, d.errors, d.firstError
	res.Seconds = d.elapsed.Seconds()
	if res.Seconds > 0 {
		res.DeliveriesPerSec = float64(d.ok) / res.Seconds
	}
	res.Latency = percentiles(d.latencies)
	if o.PID != 0 {
		st := &ServerStats{PID: o.PID}
		if cpu1, err := procCPU(o.PID); err == nil {
			st.CPUSeconds = (cpu1 - cpu0).Seconds()
			if d.sent > 0 {
				st.CPUSecondsPer1000 = st.CPUSeconds / float64(d.sent) * 1000
			}
		}
		st.PeakRSSBytes, _ = procPeakRSS(o.PID)
		if read1, written1, err := procIO(o.PID); err == nil && ioErr == nil && d.sent > 0 {
			st.ReadKiBPerDelivery = float64(read1-read0) / 1024 / float64(d.sent)
			st.WrittenKiBPerDelivery = float64(written1-written0) / 1024 / float64(d.sent)
		}
		res.Server = st
	}
	if ctx.Err() != nil {
		res.TimedOut = true
		return res, fmt.Errorf("--duration-max %s reached during deliveries (%d of %d sent)", o.DurationMax, d.sent, o.N)
	}

	// 3. Read every model back.
	logf("verifying %d models...", o.N)
	res.Verify = b.verify(ctx)
	if ctx.Err() != nil {
		res.TimedOut = true
		return res, fmt.Errorf("--duration-max %s reached during verification (%d of %d checked)", o.DurationMax, res.Verify.Checked, o.N)
	}

	// 4. Every model notified (the outbox drained).
	if rc != nil {
		logf("waiting for %d notifications...", o.N)
		st := rc.wait(ctx, b.modelIDs, o.NotifyAddr)
		res.Notify = &st
		if ctx.Err() != nil {
			res.TimedOut = true
			return res, fmt.Errorf("--duration-max %s reached waiting for notifications (%d of %d models notified)", o.DurationMax, st.Notified, o.N)
		}
	}
	return res, nil
}

type bench struct {
	o           Options
	base        string
	client      *http.Client
	addr        string // host:port, for the timed phase's own connections
	dial        func(ctx context.Context, network, addr string) (net.Conn, error)
	prefix      string // base's path, without a trailing slash
	trainingIDs []string
	modelIDs    []string
	sendOrder   []int // indexes into trainingIDs, in the order deliveries go out
}

// parallel calls fn(ctx, i) for every i in [0, N) on Concurrency workers and
// returns the first error; the others stop taking work after it.
func (b *bench) parallel(ctx context.Context, fn func(context.Context, int) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(b.o.Concurrency, b.o.N) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= b.o.N || ctx.Err() != nil {
					return
				}
				if err := fn(ctx, i); err != nil {
					cancel(err)
					return
				}
			}
		})
	}
	wg.Wait()
	return context.Cause(ctx)
}

func (b *bench) newRequest(ctx context.Context, method, path string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, method, b.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("User-Agent", "trainhook-ingestbench")
	return req, nil
}

// do sends req and returns the status and body (at most 1 MiB of it).
func (b *bench) do(req *http.Request) (int, []byte, error) {
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	io.Copy(io.Discard, resp.Body) // drain, so the connection is reused
	return resp.StatusCode, body, err
}

func (b *bench) register(ctx context.Context, i int) error {
	body, _ := json.Marshal(map[string]any{
		"name":        fmt.Sprintf("bench-%s", b.trainingIDs[i]),
		"training_id": b.trainingIDs[i],
		"metadata":    map[string]any{"source": "ingestbench", "index": i},
	})
	req, err := b.newRequest(ctx, http.MethodPost, pathModels, body)
	if err != nil {
		return err
	}
	if b.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+b.o.Token)
	}
	code, resp, err := b.do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", pathModels, err)
	}
	if code/100 != 2 {
		hint := ""
		if code == http.StatusUnauthorized || code == http.StatusForbidden {
			hint = " (pass the server's TRAINHOOK_API_TOKEN with --token)"
		}
		return fmt.Errorf("POST %s: %d %s: %s%s", pathModels, code, http.StatusText(code), snippet(resp), hint)
	}
	var m struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(resp, &m); err != nil || m.ID == "" {
		return fmt.Errorf("POST %s: answer has no model id: %s", pathModels, snippet(resp))
	}
	b.modelIDs[i] = m.ID
	return nil
}

type deliveries struct {
	sent, ok, failed int
	errors           map[string]int
	firstError       string
	latencies        []time.Duration
	elapsed          time.Duration
}

// deliver sends one signed delivery per training id and measures each
// request from just before it is sent until its answer has been read.
func (b *bench) deliver(ctx context.Context, pl *payload) deliveries {
	type tally struct {
		sent, ok, failed int
		errors           map[string]int
		firstError       string
		latencies        []time.Duration
	}
	tallies := make([]*tally, min(b.o.Concurrency, b.o.N))
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := range tallies {
		t := &tally{errors: map[string]int{}, latencies: make([]time.Duration, 0, b.o.N/len(tallies)+1)}
		tallies[w] = t
		wg.Go(func() {
			conn := &wireConn{host: b.addr, dial: func(ctx context.Context) (net.Conn, error) {
				return b.dial(ctx, "tcp", b.addr)
			}}
			defer conn.close()
			headers := make([]string, 6)
			for {
				i := int(next.Add(1) - 1)
				if i >= b.o.N || ctx.Err() != nil {
					return
				}
				tid := b.trainingIDs[b.sendOrder[i]]
				body := pl.body(tid)
				id, ts := "msg_"+tid, time.Now().Unix()
				headers[0], headers[1] = replicate.HeaderID, id
				headers[2], headers[3] = replicate.HeaderTimestamp, strconv.FormatInt(ts, 10)
				headers[4], headers[5] = replicate.HeaderSignature, b.o.Key.Sign(id, ts, body)
				t0 := time.Now()
				code, resp, err := conn.post(ctx, b.prefix+config.WebhookPath, headers, body)
				lat := time.Since(t0)
				if err != nil && ctx.Err() != nil {
					return // cut off by --duration-max; not counted
				}
				t.sent++
				switch {
				case err != nil:
					t.failed++
					t.errors["transport"]++
					if t.firstError == "" {
						t.firstError = err.Error()
					}
				case code/100 == 2:
					t.ok++
					t.latencies = append(t.latencies, lat)
				default:
					t.failed++
					t.errors[strconv.Itoa(code)]++
					t.latencies = append(t.latencies, lat)
					if t.firstError == "" {
						t.firstError = fmt.Sprintf("%d %s: %s", code, http.StatusText(code), snippet(resp))
					}
				}
			}
		})
	}
	wg.Wait()
	d := deliveries{elapsed: time.Since(start), errors: map[string]int{}}
	for _, t := range tallies {
		d.sent += t.sent
		d.ok += t.ok
		d.failed += t.failed
		for k, v := range t.errors {
			d.errors[k] += v
		}
		if d.firstError == "" {
			d.firstError = t.firstError
		}
		d.latencies = append(d.latencies, t.latencies...)
	}
	if len(d.errors) == 0 {
		d.errors = nil
	}
	return d
}

// verify reads every model back and checks it is Ready with the output its
// delivery carried.
func (b *bench) verify(ctx context.Context) Verify {
	var mu sync.Mutex
	v := Verify{ByStatus: map[string]int{}}
	problem := func(format string, args ...any) {
		if len(v.Problems) < maxProblems {
			v.Problems = append(v.Problems, fmt.Sprintf(format, args...))
		}
	}
	b.parallel(ctx, func(ctx context.Context, i int) error {
		id, tid := b.modelIDs[i], b.trainingIDs[i]
		status, p := b.check(ctx, id, tid)
		if ctx.Err() != nil {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		v.Checked++
		v.ByStatus[status]++
		if p == "" {
			v.Ready++
		} else {
			problem("model %s (training %s): %s", id, tid, p)
		}
		return nil
	})
	return v
}

// check returns the model's status and what is wrong with it, if anything.
func (b *bench) check(ctx context.Context, id, tid string) (status, problem string) {
	req, err := b.newRequest(ctx, http.MethodGet, pathModels+"/"+url.PathEscape(id), nil)
	if err != nil {
		return "error", err.Error()
	}
	if b.o.Token != "" {
		req.Header.Set("Authorization", "Bearer "+b.o.Token)
	}
	code, body, err := b.do(req)
	if err != nil {
		return "error", err.Error()
	}
	if code != http.StatusOK {
		return "HTTP " + strconv.Itoa(code), fmt.Sprintf("GET answered %d: %s", code, snippet(body))
	}
	var m struct {
		Status string                    `json:"status"`
		Output *replicate.TrainingOutput `json:"output"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return "unreadable", "model JSON: " + err.Error()
	}
	switch {
	case m.Status != string(training.Ready):
		return m.Status, "status " + m.Status + ", want Ready"
	case m.Output == nil:
		return m.Status, "Ready but no output stored"
	case m.Output.Version != expectedVersion(tid) || m.Output.Weights != expectedWeights(tid):
		return m.Status, fmt.Sprintf("output %+v is not the delivered one", *m.Output)
	}
	return m.Status, ""
}

// percentiles uses the nearest-rank method.
func percentiles(ds []time.Duration) Latency {
	if len(ds) == 0 {
		return Latency{}
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	at := func(p float64) float64 {
		i := int(math.Ceil(p*float64(len(s)))) - 1
		i = max(0, min(i, len(s)-1))
		return ms(s[i])
	}
	return Latency{P50: at(0.50), P90: at(0.90), P99: at(0.99), Max: ms(s[len(s)-1])}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// snippet shortens a response body for an error message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	if s == "" {
		s = "(empty body)"
	}
	return s
}
