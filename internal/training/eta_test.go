package training

import (
	"testing"
	"time"
)

func TestTimeLeft(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	for _, c := range []struct {
		status  Status
		eta     int
		elapsed time.Duration
		want    string
	}{
		{Training, 125, 0, "about 2 min left"},
		{Training, 150, 0, "about 3 min left"},
		{Training, 125, 100 * time.Second, "about 25 s left"},
		{Training, 18, 15 * time.Second, "almost done"},
		{Training, 5405, 0, "about 1 h 30 min left"},
		{Training, 0, 0, ""},
		{Ready, 125, 0, ""},
		{Pending, 125, 0, ""},
	} {
		m := Model{Status: c.status, UpdatedAt: at, Progress: Progress{Percent: 40, ETASeconds: c.eta}}
		if got := TimeLeft(m, at.Add(c.elapsed)); got != c.want {
			t.Errorf("%s, eta %d s, %v later: %q, want %q", c.status, c.eta, c.elapsed, got, c.want)
		}
	}
}
