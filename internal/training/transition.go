package training

// Decision says what a report does to a model record.
type Decision string

const (
	// Move: the status changes; the record and a history row are written.
	Move Decision = "applied"
	// Refresh: same non-terminal status; progress, logs and times may be updated.
	Refresh Decision = "refreshed"
	// Same: the record already holds this terminal outcome (a retry or a poll
	// that agrees with an earlier webhook); nothing is written.
	Same Decision = "same"
	// Stale: a non-terminal report about a finished model (late or replayed);
	// it never moves a model back.
	Stale Decision = "stale"
	// Conflict: a second terminal report with a different outcome. It is
	// recorded in the history and flagged, never applied.
	Conflict Decision = "conflict"
	// Unknown: Replicate sent a status trainhook does not know; logged only.
	Unknown Decision = "unknown_status"
)

// Transition is the only place that decides how a report from Replicate
// changes a model's status. It is pure so that every pair can be tested.
func Transition(from Status, remote string) (to Status, d Decision) {
	next, ok := MapRemote(remote)
	if !ok {
		return from, Unknown
	}
	switch {
	case from.Terminal() && next == from:
		return from, Same
	case from.Terminal() && next.Terminal():
		return from, Conflict
	case from.Terminal():
		return from, Stale
	case next == from:
		return from, Refresh
	default:
		return next, Move
	}
}
