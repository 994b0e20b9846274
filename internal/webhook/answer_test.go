package webhook

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/metrics"
	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/service"
	"github.com/trainhook/trainhook/internal/training"
)

// answering answers every delivery with res.
type answering struct{ res service.Result }

func (a answering) Deliver(context.Context, training.Observation, training.Delivery) (service.Result, error) {
	return a.res, nil
}
func (answering) RecordRefused(training.Delivery) bool { return true }

// The answer Replicate, `webhook send` and doctor read is the outcome's
// text, byte for byte, whatever type the service gives outcomes.
func TestAnswerBytes(t *testing.T) {
	key, _ := replicate.ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	ready := &training.Model{ID: "m1", Status: training.Ready}
	for _, c := range []struct {
		res  service.Result
		code int
		want string
	}{
		{service.Result{Outcome: service.Outcome(training.Move), Model: ready}, 200, `{"outcome":"applied","model_id":"m1","status":"Ready"}` + "\n"},
		{service.Result{Outcome: service.OutcomeDuplicate, Model: ready}, 200, `{"outcome":"duplicate","model_id":"m1","status":"Ready"}` + "\n"},
		{service.Result{Outcome: service.OutcomeHeld}, 200, `{"outcome":"held"}` + "\n"},
		{service.Result{Outcome: service.OutcomeRefused, Refusal: errors.New("bound to another model")}, 403, `{"outcome":"refused","error":"bound to another model"}` + "\n"},
	} {
		h := NewHandler(Handler{Keys: replicate.Keys{key}, Service: answering{c.res}, MaxBody: 1 << 20, Log: slog.New(slog.DiscardHandler)}, metrics.New())
		srv := httptest.NewServer(h)
		body := []byte(`{"id":"abc","status":"succeeded"}`)
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(string(body)))
		key.SignRequest(req.Header, "msg_1", time.Now(), body)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		srv.Close()
		if resp.StatusCode != c.code || string(b) != c.want {
			t.Errorf("outcome %s: answered %d %q, want %d %q", c.res.Outcome, resp.StatusCode, b, c.code, c.want)
		}
	}
}
