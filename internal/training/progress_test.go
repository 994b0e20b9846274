package training

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestParseProgress(t *testing.T) {
	cases := []struct {
		logs string
		want Progress
		ok   bool
	}{
		{" 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]", Progress{40, 400, 1000, 18}, true},
		{"a\n 10%|#  | 100/1000\nb\n 99%|█████████▉| 999/1000 [..]\nSaving weights\n", Progress{99, 999, 1000, 0}, true},
		{"flux_train_replicate:  40%|####      | 400/1000 [00:12<02:05, 33.1it/s, lr: 4.0e-04 loss: 3.9e-01]", Progress{40, 400, 1000, 125}, true},
		{" 5%|\r 6%|  | 6/100\r 7%|  | 7/100", Progress{7, 7, 100, 0}, true},
		{"100%|##########| 1000/1000", Progress{100, 1000, 1000, 0}, true},
		{" 10%|#  | 100/1000 [05:00<1:30:05, 3.3it/s]", Progress{10, 100, 1000, 5405}, true},
		{" 10%|#  | 100/1000 [00:01<?, ?it/s]", Progress{10, 100, 1000, 0}, true},
		{" 10%|#  | 100/1000 [00:01<00:99, 1it/s]", Progress{10, 100, 1000, 0}, true},
		{"50%| no counts here", Progress{Percent: 50}, true},
		{"no progress at all", Progress{}, false},
		{"", Progress{}, false},
		{"x%|", Progress{}, false},
		{" 40%|##| 400/1000\nbroken 250%| 1/2", Progress{40, 400, 1000, 0}, true},
		{" 40%|##| 5000/1000", Progress{Percent: 40}, true},
	}
	for _, c := range cases {
		got, ok := ParseProgress(c.logs)
		if ok != c.ok || got != c.want {
			t.Errorf("ParseProgress(%q) = %+v %v, want %+v %v", c.logs, got, ok, c.want, c.ok)
		}
	}
}

func TestLogTail(t *testing.T) {
	short := "line\n"
	if LogTail(short) != short {
		t.Fatal("short log changed")
	}
	long := strings.Repeat("é line of the log\n", 2000)
	tail := LogTail(long)
	if len(tail) > MaxLogTail || !strings.HasSuffix(long, tail) || !utf8.ValidString(tail) {
		t.Fatalf("bad tail: %d bytes", len(tail))
	}
	if !strings.HasPrefix(tail, "é line") {
		t.Fatalf("tail does not start at a line: %q", tail[:20])
	}
}

func TestNewIDSortsByTime(t *testing.T) {
	a := NewID(time.UnixMilli(1_700_000_000_000))
	b := NewID(time.UnixMilli(1_700_000_000_001))
	if len(a) != 26 || len(b) != 26 || !(a < b) {
		t.Fatalf("ids %s %s", a, b)
	}
	if x, y := NewID(time.UnixMilli(5)), NewID(time.UnixMilli(5)); x == y {
		t.Fatal("ids collide")
	}
}

func FuzzParseProgress(f *testing.F) {
	f.Add(" 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]")
	f.Add("a\r 1%|\n99%|x| 9/10")
	f.Fuzz(func(t *testing.T, logs string) {
		p, ok := ParseProgress(logs)
		if !ok && p != (Progress{}) {
			t.Fatal("progress without ok")
		}
		if p.Percent < 0 || p.Percent > 100 || p.Step > p.Total && p.Total > 0 {
			t.Fatalf("out of range: %+v", p)
		}
	})
}

func TestNewIDMonotonicWithinMillisecond(t *testing.T) {
	now := time.UnixMilli(1_800_000_000_000)
	prev := NewID(now)
	for i := 0; i < 1000; i++ {
		id := NewID(now)
		if id <= prev {
			t.Fatalf("id %s after %s", id, prev)
		}
		prev = id
	}
}
