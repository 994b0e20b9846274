package training

import (
	"fmt"
	"strings"
	"time"
)

// Apply works out what obs does to m: the decision, the record as it should
// be stored, and the history entry to append (nil when none). It is pure:
// the service persists the result with a conditional update.
func Apply(m Model, obs Observation, now time.Time) (Model, Decision, *HistoryEntry) {
	to, d := Transition(m.Status, obs.Remote)
	switch d {
	case Unknown, Same, Stale:
		return m, d, nil
	case Conflict:
		m.Flagged = true
		m.UpdatedAt = now
		next, _ := MapRemote(obs.Remote)
		return m, d, &HistoryEntry{
			ModelID: m.ID, From: m.Status, To: next, RemoteStatus: obs.Remote, Decision: Conflict,
			Source: obs.Source, SourceRef: obs.SourceRef, At: now,
			Note: fmt.Sprintf("Replicate reported %q after the model was already %s; kept %s", obs.Remote, m.Status, m.Status),
		}
	case Refresh:
		if len(obs.Logs) < m.LogLen {
			// An older report that arrived late: the stored one knows more.
			return m, Stale, nil
		}
	}

	from := m.Status
	m.Status = to
	m.RemoteStatus = obs.Remote
	m.UpdatedAt = now
	if obs.StartedAt != nil {
		m.StartedAt = obs.StartedAt
	}
	if obs.WebURL != "" && strings.HasPrefix(obs.WebURL, "https://") {
		m.WebURL = obs.WebURL
	}
	if len(obs.Logs) >= m.LogLen {
		m.LogLen = len(obs.Logs)
		m.LogTail = LogTail(obs.Logs)
		if p, ok := ParseProgress(obs.Logs); ok {
			m.Progress = p
		}
	}
	if d == Refresh {
		return m, d, nil
	}

	switch to {
	case Ready:
		m.Output = obs.Output
		m.Progress.Percent = 100
		if m.Progress.Total > 0 {
			m.Progress.Step = m.Progress.Total
		}
	case Failed:
		m.Error = obs.Error
		if m.Error == "" && obs.Remote == RemoteAborted {
			m.Error = `training was aborted before it started (Replicate status "aborted", e.g. a deadline passed while it was queued)`
		} else if m.Error == "" {
			m.Error = "training failed and Replicate gave no error message; see the log tail"
		}
	}
	if to.Terminal() {
		m.CompletedAt = obs.CompletedAt
		if m.CompletedAt == nil {
			t := obs.At
			m.CompletedAt = &t
		}
		m.NextCheckAt = nil
	}
	return m, Move, &HistoryEntry{
		ModelID: m.ID, From: from, To: to, RemoteStatus: obs.Remote, Decision: Move,
		Source: obs.Source, SourceRef: obs.SourceRef, At: now,
	}
}
