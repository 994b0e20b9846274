package training

import (
	"fmt"
	"time"
)

// TimeLeft says how long a running training has left by its trainer's own
// estimate, counted down from when that estimate came (UpdatedAt):
// "about 2 min left". It is "" without an estimate.
func TimeLeft(m Model, now time.Time) string {
	if m.Status != Training || m.Progress.ETASeconds <= 0 {
		return ""
	}
	left := time.Duration(m.Progress.ETASeconds)*time.Second - max(now.Sub(m.UpdatedAt), 0)
	switch {
	case left < 5*time.Second:
		return "almost done"
	case left < time.Minute:
		return fmt.Sprintf("about %d s left", int(left.Seconds()))
	case left < time.Hour:
		return fmt.Sprintf("about %d min left", int(left.Minutes()+0.5))
	}
	h := int(left.Hours())
	return fmt.Sprintf("about %d h %d min left", h, int(left.Minutes())-60*h)
}
