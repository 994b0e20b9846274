package replicate

import (
	"context"
	"sync"
	"time"
)

// Limiter paces calls to Replicate. Wait blocks until one more request may
// be sent, or returns ctx's error. Several clients (or processes, with a
// database-backed implementation) share one budget by sharing a Limiter.
type Limiter interface {
	Wait(ctx context.Context) error
}

// TokenBucket is an in-process Limiter: perMinute requests a minute, spaced
// evenly, with bursts of up to burst requests. It is the generic cell rate
// algorithm: it keeps only the time the next request is due, so it costs
// the same whatever the rate. Waiters reserve their slot before sleeping,
// so concurrent callers queue in order; a waiter whose context ends keeps
// its reservation (the budget errs on the side of sending less).
//
// It spaces requests 1% wider than a minute/perMinute, so in any 60 s window
// it lets through fewer than perMinute+burst-1 requests; a burst of 1 keeps
// strictly under perMinute even with jitter in transit.
type TokenBucket struct {
	interval  time.Duration
	tolerance time.Duration
	now       func() time.Time
	sleep     func(context.Context, time.Duration) error

	mu  sync.Mutex
	tat time.Time // theoretical arrival time of the next request
}

// NewTokenBucket returns a bucket on the real clock. perMinute < 1 is taken
// as 1 and burst < 1 as 1.
func NewTokenBucket(perMinute, burst int) *TokenBucket {
	return newTokenBucket(perMinute, burst, time.Now, sleepContext)
}

func newTokenBucket(perMinute, burst int, now func() time.Time, sleep func(context.Context, time.Duration) error) *TokenBucket {
	if perMinute < 1 {
		perMinute = 1
	}
	if burst < 1 {
		burst = 1
	}
	// 1% of headroom: requests reach the server with jitter, and an even
	// spacing of exactly a minute/perMinute can put perMinute+1 of them
	// into one 60 s window at the server's end.
	interval := time.Minute / time.Duration(perMinute)
	interval += interval / 100
	return &TokenBucket{
		interval:  interval,
		tolerance: time.Duration(burst-1) * interval,
		now:       now,
		sleep:     sleep,
	}
}

// Wait blocks until a request may be sent.
func (b *TokenBucket) Wait(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	b.mu.Lock()
	now := b.now()
	if b.tat.Before(now) {
		b.tat = now
	}
	allowAt := b.tat.Add(-b.tolerance)
	b.tat = b.tat.Add(b.interval)
	b.mu.Unlock()
	if wait := allowAt.Sub(now); wait > 0 {
		return b.sleep(ctx, wait)
	}
	return nil
}

// TryWait takes a request slot if one is free now, and reports whether it
// did; when none is, it reserves nothing, so a call that can be skipped
// (a check at registration) never delays the others.
func (b *TokenBucket) TryWait(context.Context) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if b.tat.Before(now) {
		b.tat = now
	}
	if b.tat.Add(-b.tolerance).After(now) {
		return false
	}
	b.tat = b.tat.Add(b.interval)
	return true
}

// sleepContext waits d or until ctx ends.
func sleepContext(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
