package httpapi

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/trainhook/trainhook/internal/service"
)

// StatusError is a refusal with a status that service.Kind has no word for
// (401, 413, 415, 429) or one about the request's form rather than its
// meaning. Its message is safe to send.
type StatusError struct {
	Code int
	Msg  string
}

func (e *StatusError) Error() string { return e.Msg }

// Errorf returns a *StatusError with a formatted message.
func Errorf(code int, format string, args ...any) *StatusError {
	return &StatusError{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// kindStatus is the HTTP status of each kind of service error.
var kindStatus = map[service.Kind]int{
	service.Invalid:   http.StatusBadRequest,
	service.NotFound:  http.StatusNotFound,
	service.Conflict:  http.StatusConflict,
	service.Forbidden: http.StatusForbidden,
	service.Upstream:  http.StatusBadGateway,

	service.Unprocessable: http.StatusUnprocessableEntity,
}

// Status is the one place that maps an error to an HTTP status, for the
// JSON API and the dashboard's pages alike. It returns the status, the
// message to show, and whether that message is safe to show: for internal
// errors it is not (safe is false, msg empty) and the caller logs err and
// shows a generic message instead.
func Status(err error) (code int, msg string, safe bool) {
	var se *StatusError
	if errors.As(err, &se) {
		return se.Code, se.Msg, true
	}
	var refused *service.ErrRefused
	if errors.As(err, &refused) {
		return http.StatusUnprocessableEntity, refused.Error(), true
	}
	var e *service.Error
	if errors.As(err, &e) {
		if code, ok := kindStatus[e.Kind]; ok {
			return code, e.Msg, true
		}
	}
	return http.StatusInternalServerError, "", false
}

// writeError writes err as {"error": "..."} with its status. Messages of
// domain errors are sent; internal details are logged, never sent.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	code, msg, safe := Status(err)
	if !safe {
		log.Error("internal error", "method", r.Method, "path", r.URL.Path, "err", err)
		msg = "internal error; see the server log"
	}
	writeJSON(w, code, errorBody{msg})
}
