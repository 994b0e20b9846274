package httpapi

import (
	"net/http"
)

// archiveModel removes a finished model from lists (DELETE
// /api/models/{id}); a running one is refused with 409.
func (a *API) archiveModel(w http.ResponseWriter, r *http.Request) {
	m, err := a.svc.Archive(r.Context(), r.PathValue("id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}

// retryModel starts a new training like a Failed or Canceled model's (POST
// /api/models/{id}/retry). It answers like a start: 201 with the new
// model, 422 if Replicate refused it, 202 if the start is in doubt.
func (a *API) retryModel(w http.ResponseWriter, r *http.Request) {
	m, replayed, err := a.svc.Retry(r.Context(), r.PathValue("id"), r.Header.Get("Idempotency-Key"))
	a.writeStarted(w, r, m, replayed, err)
}

// modelWebhook answers GET /api/models/{id}/webhook: the model's webhook
// token and URL.
func (a *API) modelWebhook(w http.ResponseWriter, r *http.Request) {
	wh, err := a.svc.Webhook(r.Context(), r.PathValue("id"))
	if err != nil {
		a.WriteError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, wh)
}
