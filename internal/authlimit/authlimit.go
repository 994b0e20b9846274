// Package authlimit slows down guessing of the API token: each client
// address may fail authentication a few times a minute, then it is answered
// 429 until the oldest of its failures is a minute old. Successes are never
// counted, so clients with the right token are never slowed.
package authlimit

import (
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Defaults, as the dashboard's sign-in: a token is long and random, so this
// only keeps a guessing loop from running hot.
const (
	DefaultMax    = 20
	DefaultWindow = time.Minute
	// maxClients bounds the memory a flood from many addresses can take;
	// past it the client whose last failure is oldest is forgotten.
	maxClients = 10000
)

// Limiter counts failed authentications per client address. The zero
// value is not usable; call New.
type Limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu      sync.Mutex
	clients map[string][]time.Time // failures inside the window, oldest first
}

// New returns a limiter allowing max failures per window per client.
func New(max int, window time.Duration) *Limiter {
	return &Limiter{max: max, window: window, now: time.Now, clients: map[string][]time.Time{}}
}

// Client is the address failures are counted against: the connection's IP
// address, with IPv6 addresses grouped by /64, since one host usually holds
// a whole /64. X-Forwarded-For is not trusted: anyone can send it.
func Client(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

// Blocked reports whether the client has used up its failures, and if so
// how long until it may try again.
func (l *Limiter) Blocked(r *http.Request) (time.Duration, bool) {
	key := Client(r)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	fs := l.recent(key, now)
	if len(fs) < l.max {
		return 0, false
	}
	return fs[len(fs)-l.max].Add(l.window).Sub(now), true
}

// Failed records a failed authentication by the client.
func (l *Limiter) Failed(r *http.Request) {
	key := Client(r)
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	fs := l.recent(key, now)
	if fs == nil && len(l.clients) >= maxClients {
		l.evict(now)
	}
	fs = append(fs, now)
	if len(fs) > l.max {
		fs = fs[len(fs)-l.max:] // older ones no longer decide anything
	}
	l.clients[key] = fs
}

// recent drops the client's failures older than the window and returns the
// rest. Must hold mu.
func (l *Limiter) recent(key string, now time.Time) []time.Time {
	fs := l.clients[key]
	i := 0
	for i < len(fs) && now.Sub(fs[i]) >= l.window {
		i++
	}
	if i == len(fs) {
		delete(l.clients, key)
		return nil
	}
	fs = fs[i:]
	l.clients[key] = fs
	return fs
}

// evict forgets clients with no failure inside the window, or else the one
// whose last failure is oldest. Must hold mu.
func (l *Limiter) evict(now time.Time) {
	var oldest string
	var at time.Time
	for k, fs := range l.clients {
		last := fs[len(fs)-1]
		if now.Sub(last) >= l.window {
			delete(l.clients, k)
			continue
		}
		if oldest == "" || last.Before(at) {
			oldest, at = k, last
		}
	}
	if len(l.clients) >= maxClients {
		delete(l.clients, oldest)
	}
}

// RetryAfter is the Retry-After header value for d: whole seconds, at
// least 1.
func RetryAfter(d time.Duration) string {
	return strconv.Itoa(max(1, int(math.Ceil(d.Seconds()))))
}

// Message is the answer to a blocked client.
func Message(d time.Duration) string {
	return "too many wrong API tokens from this address in the last minute; try again in " + RetryAfter(d) +
		" s with the value of TRAINHOOK_API_TOKEN"
}
