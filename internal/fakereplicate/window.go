package fakereplicate

import "time"

// window holds the times of recent requests, oldest first, and forgets
// those 60 s old or older. Its size is bounded by the traffic of a minute.
type window struct {
	times []time.Time
	head  int
}

func (w *window) prune(now time.Time) {
	cutoff := now.Add(-time.Minute)
	for w.head < len(w.times) && !w.times[w.head].After(cutoff) {
		w.head++
	}
	if w.head > 1024 && w.head > len(w.times)/2 {
		w.times = append(w.times[:0], w.times[w.head:]...)
		w.head = 0
	}
}

// add records a request at now and returns how many fall in (now-60s, now].
func (w *window) add(now time.Time) int {
	w.prune(now)
	w.times = append(w.times, now)
	return len(w.times) - w.head
}

func (w *window) count(now time.Time) int {
	w.prune(now)
	return len(w.times) - w.head
}

// secondsUntilFree is when the oldest request leaves the window, rounded up
// to whole seconds (at least 1); 0 when the window is empty.
func (w *window) secondsUntilFree(now time.Time) int {
	w.prune(now)
	if w.head == len(w.times) {
		return 0
	}
	d := w.times[w.head].Add(time.Minute).Sub(now)
	secs := int((d + time.Second - 1) / time.Second)
	return max(secs, 1)
}

func (w *window) clear() { w.times, w.head = nil, 0 }
