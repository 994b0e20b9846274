package replicate

import (
	"context"
	"errors"
	"testing"
	"time"
)

// fakeTime is a clock that moves only when the bucket sleeps.
type fakeTime struct {
	now    time.Time
	waited []time.Duration
}

func (f *fakeTime) Now() time.Time { return f.now }
func (f *fakeTime) Sleep(ctx context.Context, d time.Duration) error {
	f.waited = append(f.waited, d)
	f.now = f.now.Add(d)
	return ctx.Err()
}

func TestTokenBucketPacing(t *testing.T) {
	ft := &fakeTime{now: time.Unix(1_700_000_000, 0)}
	b := newTokenBucket(60, 3, ft.Now, ft.Sleep)
	ctx := context.Background()
	for range 5 {
		if err := b.Wait(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// A burst of 3 goes at once; then one a second, plus the 1% headroom.
	step := time.Second + 10*time.Millisecond
	want := []time.Duration{step, step}
	if len(ft.waited) != len(want) || ft.waited[0] != want[0] || ft.waited[1] != want[1] {
		t.Errorf("waits %v, want %v", ft.waited, want)
	}
	// Idle time refills the burst, but no further.
	ft.now = ft.now.Add(time.Hour)
	ft.waited = nil
	for range 4 {
		_ = b.Wait(ctx)
	}
	if len(ft.waited) != 1 || ft.waited[0] != step {
		t.Errorf("after an idle hour: waits %v, want one of 1.01s", ft.waited)
	}
}

// In any 60 s window the bucket lets through at most perMinute+burst-1, and
// with its 1% headroom no fewer than 99% of perMinute.
func TestTokenBucketWindow(t *testing.T) {
	for _, c := range []struct{ perMinute, burst int }{{60, 1}, {600, 10}, {1000, 1}} {
		ft := &fakeTime{now: time.Unix(1_700_000_000, 0)}
		b := newTokenBucket(c.perMinute, c.burst, ft.Now, ft.Sleep)
		var times []time.Time
		for range 3 * c.perMinute {
			if err := b.Wait(context.Background()); err != nil {
				t.Fatal(err)
			}
			times = append(times, ft.now)
		}
		most, lo := 0, 0
		for hi, at := range times {
			for !times[lo].After(at.Add(-time.Minute)) {
				lo++
			}
			most = max(most, hi-lo+1)
		}
		if limit, least := c.perMinute+c.burst-1, c.perMinute*99/100; most > limit || most < least {
			t.Errorf("%d/min burst %d: %d requests in a 60 s window, want %d..%d", c.perMinute, c.burst, most, least, limit)
		}
	}
}

func TestTokenBucketCanceled(t *testing.T) {
	ft := &fakeTime{now: time.Unix(1_700_000_000, 0)}
	b := newTokenBucket(1, 1, ft.Now, ft.Sleep)
	ctx, cancel := context.WithCancel(context.Background())
	if err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := b.Wait(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a canceled context: %v", err)
	}
	// The real sleep gives up when the context ends.
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := NewTokenBucket(1, 1).Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := sleepContext(ctx, time.Hour); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("sleepContext: %v", err)
	}
}

// TryWait takes a free slot and reserves nothing when there is none, so a
// later Wait is not pushed back by it.
func TestTokenBucketTryWait(t *testing.T) {
	ft := &fakeTime{now: time.Unix(1_700_000_000, 0)}
	b := newTokenBucket(60, 1, ft.Now, ft.Sleep)
	ctx := context.Background()
	if !b.TryWait(ctx) {
		t.Fatal("a fresh bucket has no free slot")
	}
	for range 3 {
		if b.TryWait(ctx) {
			t.Fatal("TryWait took a slot that was not free")
		}
	}
	// The refusals reserved nothing: the next Wait waits one interval only.
	if err := b.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if step := time.Second + 10*time.Millisecond; len(ft.waited) != 1 || ft.waited[0] != step {
		t.Errorf("waits %v, want one of %v", ft.waited, step)
	}
	ft.now = ft.now.Add(2 * time.Second)
	if !b.TryWait(ctx) {
		t.Error("no free slot after the interval")
	}
}
