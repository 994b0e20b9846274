package notify

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"
)

// Probe dials each URL's host and port (TCP only: no request is sent, so
// the app sees nothing) and returns, for each that cannot be reached now,
// why. At start-up it turns a mistyped or refusing URL into a clear log
// line at once, instead of a first failed attempt after the first event;
// the events themselves are kept and retried whatever it finds.
func Probe(ctx context.Context, urls []string, timeout time.Duration) map[string]error {
	var (
		mu   sync.Mutex
		bad  = map[string]error{}
		wg   sync.WaitGroup
		dial = net.Dialer{Timeout: timeout}
	)
	for _, raw := range urls {
		wg.Go(func() {
			u, err := url.Parse(raw)
			if err != nil {
				mu.Lock()
				bad[raw] = err
				mu.Unlock()
				return
			}
			port := u.Port()
			if port == "" {
				port = map[string]string{"http": "80", "https": "443"}[u.Scheme]
			}
			c, err := dial.DialContext(ctx, "tcp", net.JoinHostPort(u.Hostname(), port))
			if err != nil {
				mu.Lock()
				bad[raw] = fmt.Errorf("cannot connect to %s: %w", net.JoinHostPort(u.Hostname(), port), err)
				mu.Unlock()
				return
			}
			c.Close()
		})
	}
	wg.Wait()
	return bad
}
