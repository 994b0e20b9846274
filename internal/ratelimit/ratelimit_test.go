package ratelimit

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/trainhook/trainhook/internal/pgtest"
	"github.com/trainhook/trainhook/internal/replicate"
)

var _ replicate.Limiter = (*Shared)(nil)

// openPools opens n pools on one new database: n instances.
func openPools(t *testing.T, n int) []*pgxpool.Pool {
	t.Helper()
	url := pgtest.URL(t)
	pools := make([]*pgxpool.Pool, n)
	for i := range pools {
		p, err := pgxpool.New(t.Context(), url)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(p.Close)
		pools[i] = p
	}
	return pools
}

// Three instances, each with several callers, hammer one budget: in no
// window are there more than N grants, and the budget is used, not starved.
// A one-second window stands in for the minute. The margin is larger than
// production's share (1 s a minute): under the race detector on a busy
// machine, a waiter can return 100 ms late.
func TestSharedBudgetAcrossInstances(t *testing.T) {
	const (
		perWindow = 20
		window    = time.Second
		run       = 3500 * time.Millisecond
	)
	pools := openPools(t, 3)
	limiters := make([]*Shared, len(pools))
	for i, p := range pools {
		l, err := New(t.Context(), p, Options{Name: "test", PerWindow: perWindow, Window: window, Margin: 300 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		limiters[i] = l
	}
	ctx, cancel := context.WithTimeout(t.Context(), run)
	defer cancel()
	var (
		mu     sync.Mutex
		grants []time.Time
		perLim = make([]int, len(limiters))
		wg     sync.WaitGroup
	)
	for i, l := range limiters {
		for range 4 {
			wg.Go(func() {
				for {
					if err := l.Wait(ctx); err != nil {
						if !errors.Is(err, context.DeadlineExceeded) {
							t.Error(err)
						}
						return
					}
					now := time.Now()
					mu.Lock()
					grants = append(grants, now)
					perLim[i]++
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	slices.SortFunc(grants, func(a, b time.Time) int { return a.Compare(b) })
	most := 0
	for i, g := range grants {
		j, _ := slices.BinarySearchFunc(grants, g.Add(window), func(a, b time.Time) int { return a.Compare(b) })
		most = max(most, j-i)
	}
	t.Logf("%d grants in %v (per instance %v); at most %d in any %v window", len(grants), run, perLim, most, window)
	if most > perWindow {
		t.Errorf("%d grants in one %v window, budget %d", most, window, perWindow)
	}
	// The slots are (window+margin)/N apart: about 3.5s/65ms = 53 in all.
	if want := int(run/limiters[0].Interval()) * 8 / 10; len(grants) < want {
		t.Errorf("only %d grants in %v, want at least %d: the budget is not used", len(grants), run, want)
	}
	for i, n := range perLim {
		if n == 0 {
			t.Errorf("instance %d got no grant", i)
		}
	}
}

// A waiter gives up when its context ends, without waiting for its slot.
func TestWaitHonoursContext(t *testing.T) {
	pools := openPools(t, 1)
	l, err := New(t.Context(), pools[0], Options{Name: "slow", PerWindow: 1, Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Wait(t.Context()); err != nil { // the first slot is free now
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := l.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Wait = %v, want DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("Wait returned after %v", took)
	}
	canceled, cancel2 := context.WithCancel(t.Context())
	cancel2()
	if err := l.Wait(canceled); !errors.Is(err, context.Canceled) {
		t.Errorf("Wait with a canceled context = %v", err)
	}
}

// Budgets with different names do not share slots, and several instances
// creating the table at once do not fail.
func TestSeparateBudgetsAndConcurrentSetup(t *testing.T) {
	pools := openPools(t, 4)
	var wg sync.WaitGroup
	ls := make([]*Shared, len(pools))
	errs := make([]error, len(pools))
	for i, p := range pools {
		wg.Go(func() {
			ls[i], errs[i] = New(t.Context(), p, Options{Name: []string{"a", "b"}[i%2], PerWindow: 1, Window: time.Hour})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	if err := ls[0].Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if err := ls[1].Wait(ctx); err != nil {
		t.Errorf("budget b waited for budget a: %v", err)
	}
}

// TryWait takes the shared budget's slot when it is free now, and reserves
// nothing when it is not.
func TestSharedTryWait(t *testing.T) {
	pools := openPools(t, 2)
	var ls []*Shared
	for _, p := range pools {
		l, err := New(t.Context(), p, Options{Name: "trywait", PerWindow: 1, Window: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
	}
	if !ls[0].TryWait(t.Context()) {
		t.Fatal("a new budget has no free slot")
	}
	for _, l := range ls {
		if l.TryWait(t.Context()) {
			t.Fatal("TryWait took a slot that was not free")
		}
	}
	var tat time.Time
	if err := pools[0].QueryRow(t.Context(), "SELECT tat FROM rate_limits WHERE name = 'trywait'").Scan(&tat); err != nil {
		t.Fatal(err)
	}
	if ahead := time.Until(tat); ahead > time.Hour+time.Minute {
		t.Errorf("refused TryWaits reserved slots: the next is %v ahead", ahead)
	}
}
