package training

import (
	"fmt"
	"strings"
)

// Status is the state of a model record as trainhook's users see it.
type Status string

// The model statuses. Ready, Failed and Canceled are terminal: once a model
// reaches one, no later report changes it.
const (
	Pending  Status = "Pending"  // registered, no news from Replicate yet
	Training Status = "Training" // Replicate reports starting or processing
	Ready    Status = "Ready"    // succeeded; Output holds the new version and weights
	Failed   Status = "Failed"   // failed or aborted; Error says why
	Canceled Status = "Canceled" // canceled by a user or by a deadline
)

// Statuses lists every model status in lifecycle order.
var Statuses = []Status{Pending, Training, Ready, Failed, Canceled}

// Terminal reports whether s is final.
func (s Status) Terminal() bool { return s == Ready || s == Failed || s == Canceled }

// Valid reports whether s is one of the statuses above.
func (s Status) Valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// ParseStatus accepts a status in any letter case ("ready", "Ready").
func ParseStatus(s string) (Status, error) {
	for _, v := range Statuses {
		if strings.EqualFold(string(v), s) {
			return v, nil
		}
	}
	return "", fmt.Errorf("unknown status %q: want one of Pending, Training, Ready, Failed, Canceled", s)
}

// The statuses Replicate reports for a training or prediction.
const (
	RemoteStarting   = "starting"
	RemoteProcessing = "processing"
	RemoteSucceeded  = "succeeded"
	RemoteFailed     = "failed"
	RemoteCanceled   = "canceled"
	RemoteAborted    = "aborted" // ended before it started (newer API)
)

// RemoteStatuses lists the Replicate statuses trainhook understands.
var RemoteStatuses = []string{RemoteStarting, RemoteProcessing, RemoteSucceeded, RemoteFailed, RemoteCanceled, RemoteAborted}

// MapRemote maps a Replicate status to the model status it implies. ok is
// false for a status trainhook does not know; callers log it and change nothing.
func MapRemote(remote string) (s Status, ok bool) {
	switch remote {
	case RemoteStarting, RemoteProcessing:
		return Training, true
	case RemoteSucceeded:
		return Ready, true
	case RemoteFailed, RemoteAborted:
		return Failed, true
	case RemoteCanceled:
		return Canceled, true
	}
	return "", false
}

// RemoteTerminal reports whether a Replicate status is final.
func RemoteTerminal(remote string) bool {
	s, ok := MapRemote(remote)
	return ok && s.Terminal()
}
