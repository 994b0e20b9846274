package web

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/trainhook/trainhook/internal/service"
)

// httpError is an error the dashboard itself answers with a status that
// service.Kind has no word for (401, 413, 429), or a 400/404 about the
// request's form. Its message is safe to show.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func httpErrorf(code int, format string, args ...any) *httpError {
	return &httpError{code: code, msg: fmt.Sprintf(format, args...)}
}

var (
	errCrossOrigin = httpErrorf(http.StatusForbidden, "This request came from another site, so it was refused. Use the dashboard's own pages.")
	errNoSession   = httpErrorf(http.StatusForbidden, "Your browser did not send the dashboard's session cookie (it may have expired or be blocked). Reload the page and try again.")
	errCSRF        = httpErrorf(http.StatusForbidden, "This form has expired or did not come from this dashboard (its CSRF token does not match your session). Reload the page and try again.")
)

func invalid(format string, args ...any) error {
	return &service.Error{Kind: service.Invalid, Msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &service.Error{Kind: service.NotFound, Msg: fmt.Sprintf(format, args...)}
}

func formError(err error) error {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return httpErrorf(http.StatusRequestEntityTooLarge, "The form is larger than %d KiB.", maxForm>>10)
	}
	return invalid("The form could not be read: %v", err)
}

// statusOf is the one place that maps an error to an HTTP status and a
// message safe to show. Internal errors show a generic message; their
// details go to the log.
func statusOf(err error) (int, string, bool) {
	var he *httpError
	if errors.As(err, &he) {
		return he.code, he.msg, true
	}
	var refused *service.ErrRefused
	if errors.As(err, &refused) {
		return http.StatusUnprocessableEntity, refused.Error(), true
	}
	var e *service.Error
	if errors.As(err, &e) && e.Kind != service.Internal {
		code := map[service.Kind]int{
			service.Invalid: http.StatusBadRequest, service.NotFound: http.StatusNotFound,
			service.Conflict: http.StatusConflict, service.Forbidden: http.StatusForbidden,
			service.Upstream: http.StatusBadGateway, service.Unprocessable: http.StatusUnprocessableEntity,
		}[e.Kind]
		return code, e.Msg, true
	}
	return http.StatusInternalServerError, "Something went wrong on the server; the details are in its log.", false
}

func (s *server) logInternal(r *http.Request, err error) {
	s.log.Error("dashboard: internal error", "method", r.Method, "path", r.URL.Path, "err", err)
}

// fail renders err as an HTML error page.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	code, msg, safe := statusOf(err)
	if !safe {
		s.logInternal(r, err)
	}
	title := http.StatusText(code)
	if code == http.StatusNotFound {
		title = "Not found"
	}
	if rerr := s.render(w, r, code, "error", title, errorView{Code: code, Message: msg}); rerr != nil {
		s.logInternal(r, rerr)
		http.Error(w, msg, code)
	}
}

type errorView struct {
	Code    int
	Message string
}

// failJSON writes err as {"error": "..."}.
func (s *server) failJSON(w http.ResponseWriter, r *http.Request, err error) {
	code, msg, safe := statusOf(err)
	if !safe {
		s.logInternal(r, err)
	}
	writeJSON(w, code, struct {
		Error string `json:"error"`
	}{msg})
}

// notFoundPage answers every path no route claims.
func (s *server) notFoundPage(w http.ResponseWriter, r *http.Request) error {
	return notFound("There is no page at %s.", clip(r.URL.Path, 80))
}

func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
