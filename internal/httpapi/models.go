package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// createModelRequest either hands over a training the caller started
// (training_id) or asks trainhook to start one (trainer, destination, input).
type createModelRequest struct {
	Name        string          `json:"name"`
	TrainingID  string          `json:"training_id"`
	Metadata    json.RawMessage `json:"metadata"`
	Trainer     string          `json:"trainer"`
	Destination string          `json:"destination"`
	Input       json.RawMessage `json:"input"`
	NotifyURL   string          `json:"notify_url"`
}

func (a *API) createModel(w http.ResponseWriter, r *http.Request) {
	var req createModelRequest
	if err := DecodeJSON(w, r, &req); err != nil {
		a.WriteError(w, r, err)
		return
	}
	key := r.Header.Get("Idempotency-Key")
	starting := req.Trainer != "" || req.Destination != "" || len(req.Input) > 0
	var (
		m        training.Model
		replayed bool
		err      error
	)
	switch {
	case req.TrainingID != "" && starting:
		err = &service.Error{Kind: service.Invalid, Msg: `send either "training_id" (to track a training you started) or "trainer", "destination" and "input" (to have trainhook start one), not both`}
	case starting:
		m, replayed, err = a.svc.Start(r.Context(), service.StartRequest{
			Name: req.Name, Trainer: req.Trainer, Destination: req.Destination, Input: req.Input,
			Metadata: req.Metadata, IdempotencyKey: key, NotifyURL: req.NotifyURL,
		})
	case req.TrainingID == "":
		err = &service.Error{Kind: service.Invalid, Msg: `send "training_id" (to track a training you started) or "trainer" and "destination" (to have trainhook start one)`}
	default:
		m, replayed, err = a.svc.Register(r.Context(), service.RegisterRequest{
			Name: req.Name, TrainingID: req.TrainingID, Metadata: req.Metadata, IdempotencyKey: key, NotifyURL: req.NotifyURL,
		})
	}
	a.writeStarted(w, r, m, replayed, err)
}

// writeStarted answers a request that registered or started a model: 201
// with it (200 and Idempotent-Replayed on a repeat), 422 with Replicate's
// refusal and the Failed model, 202 while the start is in doubt.
func (a *API) writeStarted(w http.ResponseWriter, r *http.Request, m training.Model, replayed bool, err error) {
	var refused *service.ErrRefused
	switch {
	case errors.As(err, &refused):
		// The model exists and is Failed with Replicate's message.
		w.Header().Set("Location", "/api/models/"+refused.Model.ID)
		writeJSON(w, http.StatusUnprocessableEntity, struct {
			Error string         `json:"error"`
			Model training.Model `json:"model"`
		}{refused.Error(), refused.Model})
		return
	case err != nil && m.ID != "" && service.KindOf(err) == service.Upstream:
		// The start is in doubt; the model is Pending and will be recovered.
		w.Header().Set("Location", "/api/models/"+m.ID)
		writeJSON(w, http.StatusAccepted, struct {
			training.Model
			Warning string `json:"warning"`
		}{m, err.Error()})
		return
	case err != nil:
		a.WriteError(w, r, err)
		return
	}
	code := http.StatusCreated
	if replayed {
		code = http.StatusOK
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Location", "/api/models/"+m.ID)
	writeJSON(w, code, m)
}

// DecodeJSON reads a JSON object request body strictly: capped size, JSON
// content type, no unknown fields, nothing after the object.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); !isJSON(ct) {
		return &StatusError{Code: http.StatusUnsupportedMediaType, Msg: contentTypeMsg(ct)}
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		var syntax *json.SyntaxError
		var typ *json.UnmarshalTypeError
		msg := "invalid JSON body: " + err.Error()
		switch {
		case errors.As(err, &tooBig):
			msg = fmt.Sprintf("request body is larger than %d bytes", maxAPIBody)
		case errors.Is(err, io.EOF):
			msg = "empty body: send a JSON object"
		case errors.As(err, &syntax):
			msg = fmt.Sprintf("invalid JSON at byte %d: %s", syntax.Offset, syntax.Error())
		case errors.As(err, &typ):
			msg = fmt.Sprintf("field %q must be %s, not JSON %s", typ.Field, typ.Type, typ.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			msg = "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ") + " (see the README's API section for the accepted fields)"
		}
		return &service.Error{Kind: service.Invalid, Msg: msg}
	}
	if dec.More() {
		return &service.Error{Kind: service.Invalid, Msg: "body has data after the JSON object"}
	}
	return nil
}

func (a *API) listModels(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.ModelFilter{Query: q.Get("q")}
	if s := q.Get("status"); s != "" {
		st, err := training.ParseStatus(s)
		if err != nil {
			a.WriteError(w, r, &service.Error{Kind: service.Invalid, Msg: "status: " + err.Error()})
			return
		}
		f.Status = st
	}
	switch q.Get("archived") {
	case "", "false":
	case "true":
		f.Archived = true
	default:
		a.WriteError(w, r, &service.Error{Kind: service.Invalid, Msg: fmt.Sprintf("archived must be true or false, got %q; archived=true lists removed models too", clipQuery(q.Get("archived")))})
		return
	}
	if s := q.Get("limit"); s != "" {
		// 0 is refused here: the service reads a zero Limit as "the
		// default", which a caller who sent limit=0 did not ask for.
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > service.MaxPage {
			a.WriteError(w, r, &service.Error{Kind: service.Invalid, Msg: fmt.Sprintf(
				"limit must be a whole number from 1 to %d, got %q; omit it for the default page of %d",
				service.MaxPage, clipQuery(s), service.DefaultPage)})
			return
		}
		f.Limit = n
	}
	if c := q.Get("cursor"); c != "" {
		id, ok := service.ParseModelCursor(c)
		if !ok {
			a.WriteError(w, r, &service.Error{Kind: service.Invalid, Msg: "cursor is not one this server issued; omit it to start from the first page"})
			return
		}
		f.Before = id
	}
	logs := false
	switch inc := q.Get("include"); inc {
	case "":
	case "logs":
		logs = true
	default:
		a.WriteError(w, r, &service.Error{Kind: service.Invalid, Msg: fmt.Sprintf("include must be logs (each model with its log tail), got %q", clipQuery(inc))})
		return
	}
	ms, next, err := a.svc.Models(r.Context(), f)
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	if !logs {
		// A list carries each model's summary; a log tail is kilobytes.
		for i := range ms {
			ms[i].LogTail = ""
		}
	}
	resp := struct {
		Models     []training.Model `json:"models"`
		NextCursor string           `json:"next_cursor,omitempty"`
	}{Models: ms}
	if next != "" {
		resp.NextCursor = service.ModelCursor(next)
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) cancelModel(w http.ResponseWriter, r *http.Request) {
	m, err := a.svc.Cancel(r.Context(), r.PathValue("id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	code := http.StatusOK
	if !m.Status.Terminal() {
		code = http.StatusAccepted // Replicate has not confirmed yet
	}
	writeJSON(w, code, m)
}

func (a *API) getModel(w http.ResponseWriter, r *http.Request) {
	d, err := a.svc.Model(r.Context(), r.PathValue("id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, d)
}

// clipQuery shortens a query value quoted back in an error message.
func clipQuery(s string) string {
	if len(s) > 40 {
		return s[:40] + "..."
	}
	return s
}
