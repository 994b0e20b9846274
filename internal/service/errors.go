package service

import (
	"errors"
	"fmt"
)

// Kind classifies an error for the one place that maps errors to HTTP.
type Kind int

const (
	Internal      Kind = iota // our fault: 5xx, details logged, never sent
	Invalid                   // the request is wrong: 400
	NotFound                  // 404
	Conflict                  // 409: it clashes with what is stored
	Forbidden                 // 403: well formed and signed, but not allowed
	Upstream                  // 502: Replicate refused or failed
	Unprocessable             // 422: well formed, but not allowed here, or Replicate says it cannot be (no such training)
)

// Error is a domain error whose message is safe to show to the caller and
// says what was wrong and how to fix it.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // the cause, if any
}

func (e *Error) Error() string {
	if e.Err != nil && e.Kind == Internal {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

func errorf(k Kind, format string, args ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err: Internal unless it is an *Error.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	return Internal
}
