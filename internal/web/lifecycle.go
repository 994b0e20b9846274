package web

import (
	"errors"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"

	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// maxShortError is how much of a failed model's error the list shows; the
// model page has all of it.
const maxShortError = 90

// ShortError is a failed model's error on one line, shortened for the list.
func (m modelRow) ShortError() string {
	if m.Status != training.Failed || m.Error == "" {
		return ""
	}
	e := strings.Join(strings.Fields(m.Error), " ")
	if utf8.RuneCountInString(e) <= maxShortError {
		return e
	}
	r := []rune(e)
	return strings.TrimSpace(string(r[:maxShortError-1])) + "…"
}

// Archived reports whether this entry records the model's removal from
// lists, which is not a status change.
func (h historyRow) Archived() bool { return h.Decision == service.DecisionArchived }

// removeSubmit removes a finished model from the list; the model page
// still shows it.
func (s *server) removeSubmit(w http.ResponseWriter, r *http.Request) error {
	m, err := s.d.Service.Archive(r.Context(), r.PathValue("id"))
	if err != nil {
		return s.modelActionFailed(w, r, err, "The model was not removed: ")
	}
	http.Redirect(w, r, "/models/"+url.PathEscape(m.ID)+"?notice=removed", http.StatusSeeOther)
	return nil
}

// retrySubmit starts a failed or canceled model's training again, as a new
// model, and shows that one.
func (s *server) retrySubmit(w http.ResponseWriter, r *http.Request) error {
	key := r.PostForm.Get("key")
	if len(key) > service.MaxIdemKeyLen {
		key = ""
	}
	m, _, err := s.d.Service.Retry(r.Context(), r.PathValue("id"), key)
	var refused *service.ErrRefused
	switch {
	case errors.As(err, &refused):
		// The new model exists and is Failed with Replicate's reason.
		http.Redirect(w, r, "/models/"+url.PathEscape(refused.Model.ID), http.StatusSeeOther)
		return nil
	case err != nil && m.ID != "" && service.KindOf(err) == service.Upstream:
		http.Redirect(w, r, "/models/"+url.PathEscape(m.ID)+"?notice=start-pending", http.StatusSeeOther)
		return nil
	case err != nil:
		return s.modelActionFailed(w, r, err, "The training was not retried: ")
	}
	http.Redirect(w, r, "/models/"+url.PathEscape(m.ID)+"?notice=retried", http.StatusSeeOther)
	return nil
}

// modelActionFailed shows why an action on the model page was refused, on
// the model page itself.
func (s *server) modelActionFailed(w http.ResponseWriter, r *http.Request, err error, what string) error {
	code, msg, safe := statusOf(err)
	if !safe || code == http.StatusNotFound {
		return err
	}
	v, lerr := s.loadModel(r)
	if lerr != nil {
		return lerr
	}
	return s.renderView(w, r, code, "model", &view{Title: v.Name, ModelID: v.ID, Data: v, Notice: what + msg, NoticeIsError: true})
}
