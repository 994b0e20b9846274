package service

import "github.com/trainhook/trainhook/internal/training"

// Outcome says what a write did: for a report, a training.Decision or what
// kept it from being decided; for a use case, what it stored. Its text is
// what the webhook answer, the delivery log and the metrics show.
type Outcome string

// Outcomes of a delivery or observation besides training.Decision values.
const (
	OutcomeDuplicate Outcome = "duplicate" // webhook-id seen before: acknowledged, not applied again
	OutcomeHeld      Outcome = "held"      // no model has this training id yet: kept, applied on registration
	OutcomeRefused   Outcome = "refused"   // signed, but bound to another model
)

// Outcomes of the use cases that write through the writer.
const (
	outcomeInserted   Outcome = "inserted"   // a start's model row is stored
	outcomeRegistered Outcome = "registered" // a model for an existing training is stored
	outcomeReplayed   Outcome = "replayed"   // the idempotency key's earlier request answered
	outcomeKnown      Outcome = "known"      // the training already has a model
	outcomeArchived   Outcome = "archived"   // the model is archived (now or before)
)

// decided is the outcome of a report the transition decided.
func decided(d training.Decision) Outcome { return Outcome(d) }
