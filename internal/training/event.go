package training

import "unicode/utf8"

// MaxEventLog is how much of the log tail a model event carries; the
// model's page reads the rest.
const MaxEventLog = 2 << 10

// EventModel shapes a model as live events carry it. Events are kept for
// resumption (and, with PostgreSQL, sent to the other instances), so they
// carry the model without its input and idempotency key, and with at most
// MaxEventLog bytes of its log tail, cut at a character boundary.
func EventModel(m Model) Model {
	m.Input, m.IdempotencyKey = nil, ""
	if len(m.LogTail) > MaxEventLog {
		tail := m.LogTail[len(m.LogTail)-MaxEventLog:]
		for len(tail) > 0 && !utf8.RuneStart(tail[0]) {
			tail = tail[1:]
		}
		m.LogTail = tail
	}
	return m
}
