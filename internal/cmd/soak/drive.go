package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/trainhook/trainhook/internal/fakereplicate"
	"github.com/trainhook/trainhook/internal/training"
)

// apiClient calls trainhook's management API on whichever instance is up.
type apiClient struct {
	c     *cluster
	token string
	http  *http.Client
}

func newAPIClient(c *cluster, token string) *apiClient {
	return &apiClient{c: c, token: token, http: &http.Client{
		// A start waits for trainhook's calls to Replicate, which wait for
		// the rate limiter and 429s; trainhook's own WriteTimeout is 60 s.
		Timeout:   90 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
	}}
}

// do sends one request; err is set when no answer came (connection refused
// or reset: the instance was killed).
func (a *apiClient) do(ctx context.Context, method, path string, body []byte, h map[string]string) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.c.pick()+path, rd)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+a.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range h {
		req.Header.Set(k, v)
	}
	resp, err := a.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, nil
}

// tracked is one training the soak asked for, and what came of asking.
type tracked struct {
	i         int
	dest      string // owner/name, unique to this training
	key       string // Idempotency-Key
	id        string // trainhook's model id
	refused   bool   // 422: Replicate refused the start
	cancel    bool   // the soak cancels it mid-run
	startErr  string
	cancelRes string // what the cancel got: 200, 202, 409 already final, gave up
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// drive starts every training with concurrency workers; cancels run in
// their own goroutines, each after a random part of a training's run.
func (r *runState) drive(ctx context.Context) error {
	runID := randHex(4)
	r.models = make([]*tracked, r.o.n)
	for i := range r.models {
		r.models[i] = &tracked{
			i:      i,
			dest:   fmt.Sprintf("%s/soak-%s-%s-%05d", fakereplicate.DefaultUsername, r.mode[:1], runID, i),
			key:    fmt.Sprintf("soak-%s-%s-%05d", r.mode, runID, i),
			cancel: r.randFloat() < r.o.cancelRate,
		}
	}
	jobs := make(chan *tracked)
	var workers, cancels sync.WaitGroup
	for w := 0; w < r.o.concurrency; w++ {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for m := range jobs {
				r.start(ctx, m)
				r.started.Add(1)
				if m.cancel && m.id != "" && !m.refused {
					delay := r.randDuration(r.o.duration/10, r.o.duration*9/10)
					cancels.Add(1)
					go func() {
						defer cancels.Done()
						r.cancelOne(ctx, m, delay)
					}()
				}
			}
		}()
	}
	var pace <-chan time.Time
	if r.o.startRate > 0 {
		t := time.NewTicker(time.Duration(float64(time.Second) / r.o.startRate))
		defer t.Stop()
		pace = t.C
	}
	for _, m := range r.models {
		if pace != nil {
			select {
			case <-pace:
			case <-ctx.Done():
			}
		}
		select {
		case jobs <- m:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	workers.Wait()
	cancels.Wait()
	return ctx.Err()
}

func (r *runState) startBody(m *tracked) []byte {
	input := map[string]any{"input_images": fmt.Sprintf("https://example.com/soak/%s.zip", m.key), "trigger_word": fmt.Sprintf("TOK%05d", m.i), "steps": 1000}
	if r.o.sameInput {
		input = map[string]any{"input_images": "https://example.com/soak/same.zip", "trigger_word": "TOK", "steps": 1000}
	}
	trainer := fakereplicate.FluxTrainer + ":" + fakereplicate.FluxTrainerVersion
	if m.i%10 == 0 {
		trainer = fakereplicate.FluxTrainer // trainhook resolves the latest version
	}
	b, _ := json.Marshal(map[string]any{
		"name": "soak " + m.key, "trainer": trainer, "destination": m.dest, "input": input,
		"metadata": map[string]any{"soak_index": m.i},
	})
	return b
}

// start asks trainhook to start m's training, again with the same
// Idempotency-Key until an answer says what happened: an instance killed
// mid-request leaves the outcome unknown, and the key makes asking again
// safe (at most one model, at most one training).
func (r *runState) start(ctx context.Context, m *tracked) {
	body := r.startBody(m)
	h := map[string]string{"Idempotency-Key": m.key}
	deadline := time.Now().Add(10 * time.Minute)
	for attempt := 0; time.Now().Before(deadline) && ctx.Err() == nil; attempt++ {
		code, resp, err := r.api.do(ctx, "POST", "/api/models", body, h)
		var got struct {
			training.Model
			Error   string         `json:"error"`
			Refused training.Model `json:"model"`
		}
		if err == nil {
			_ = json.Unmarshal(resp, &got)
		}
		switch {
		case err != nil:
			r.rep.count(&r.rep.Drive.StartRetries)
		case code == http.StatusCreated || code == http.StatusOK || code == http.StatusAccepted:
			m.id = got.ID
			if code == http.StatusAccepted {
				r.rep.count(&r.rep.Drive.StartsInDoubt)
			}
			return
		case code == http.StatusUnprocessableEntity:
			m.id, m.refused = got.Refused.ID, true
			r.rep.count(&r.rep.Drive.StartsRefused)
			return
		case code == http.StatusConflict && strings.Contains(got.Error, "in use by a request running now"), code >= 500:
			// The first request with this key is still running (on an
			// instance that may have been killed since), or trainhook
			// could not answer: ask again.
			r.rep.count(&r.rep.Drive.StartRetries)
		default:
			m.startErr = fmt.Sprintf("start %s: %d %s", m.key, code, clip(string(resp), 300))
			r.rep.problem("%s", m.startErr)
			return
		}
		_ = sleepCtx(ctx, time.Duration(min(attempt+1, 10))*100*time.Millisecond)
	}
	m.startErr = "start " + m.key + ": no answer within 10 minutes"
	r.rep.problem("%s", m.startErr)
}

// cancelOne cancels m's training through trainhook after delay.
func (r *runState) cancelOne(ctx context.Context, m *tracked, delay time.Duration) {
	if sleepCtx(ctx, delay) != nil {
		return
	}
	r.rep.count(&r.rep.Drive.CancelsRequested)
	// A start in doubt has no training id until it is recovered, which can
	// take minutes after a kill: such a cancel is given up, not waited for.
	deadline := time.Now().Add(30*time.Second + 3*r.o.duration)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		code, resp, err := r.api.do(ctx, "POST", "/api/models/"+m.id+"/cancel", nil, nil)
		var e struct{ Error string }
		_ = json.Unmarshal(resp, &e)
		switch {
		case err != nil, code >= 500:
			// Killed mid-request, or Replicate failed (502): cancel is
			// idempotent, so ask again.
		case code == http.StatusOK || code == http.StatusAccepted:
			m.cancelRes = fmt.Sprint(code)
			r.rep.count(&r.rep.Drive.CancelsConfirmed)
			return
		case code == http.StatusConflict && strings.Contains(e.Error, "already"):
			m.cancelRes = "already final"
			r.rep.count(&r.rep.Drive.CancelsTooLate)
			return
		case code == http.StatusConflict:
			// No training id yet (a start in doubt): later.
			_ = sleepCtx(ctx, time.Second)
			continue
		default:
			m.cancelRes = fmt.Sprintf("%d %s", code, clip(e.Error, 200))
			r.rep.problem("cancel %s: %d %s", m.id, code, clip(string(resp), 300))
			return
		}
		_ = sleepCtx(ctx, 300*time.Millisecond)
	}
	m.cancelRes = "gave up"
	r.rep.count(&r.rep.Drive.CancelsGaveUp)
}

// listAll reads every model through the API, newest first. Pages of 500:
// with limit=1000 the API never returns a next_cursor (see RELIABILITY.md,
// findings).
func (r *runState) listAll(ctx context.Context) ([]training.Model, error) {
	var all []training.Model
	cursor := ""
	for page := 0; page < 1000; page++ {
		var p struct {
			Models     []training.Model `json:"models"`
			NextCursor string           `json:"next_cursor"`
		}
		if err := r.getJSON(ctx, "/api/models?limit=500&cursor="+cursor, &p); err != nil {
			return nil, err
		}
		all = append(all, p.Models...)
		if cursor = p.NextCursor; cursor == "" {
			return all, nil
		}
	}
	return nil, errors.New("more than 1000 pages of models")
}

// getJSON GETs path until an instance answers 200, for up to a minute.
func (r *runState) getJSON(ctx context.Context, path string, v any) error {
	var last string
	for attempt := 0; attempt < 120 && ctx.Err() == nil; attempt++ {
		code, body, err := r.api.do(ctx, "GET", path, nil, nil)
		switch {
		case err != nil:
			last = err.Error()
		case code == http.StatusOK:
			return json.Unmarshal(body, v)
		default:
			last = fmt.Sprintf("%d %s", code, clip(string(body), 200))
			if code < 500 {
				return fmt.Errorf("GET %s: %s", path, last)
			}
		}
		_ = sleepCtx(ctx, 500*time.Millisecond)
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("GET %s: %s", path, last)
}

// waitQuiet waits until every model is final, then for the stragglers:
// retried, duplicated and reordered webhooks still on their way.
func (r *runState) waitQuiet(ctx context.Context) error {
	r.logf("all %d starts answered; waiting for every model to be final", r.o.n)
	waitStart := time.Now()
	for {
		ms, err := r.listAll(ctx)
		if err != nil {
			return err
		}
		open := 0
		for _, m := range ms {
			if !m.Status.Terminal() {
				open++
			}
		}
		if open == 0 && len(ms) >= r.o.n {
			break
		}
		if time.Since(waitStart) > 30*time.Second && int(time.Since(waitStart).Seconds())%30 < 2 {
			r.logf("%d of %d models not final yet", open, len(ms))
		}
		if err := sleepCtx(ctx, 2*time.Second); err != nil {
			return fmt.Errorf("gave up waiting for quiescence: %d models not final", open)
		}
	}
	r.rep.QuiescentAfterDriveSeconds = time.Since(waitStart).Seconds()
	straggle := r.o.retryWindow + r.o.webhookDelay + 3*time.Second
	r.logf("every model is final; waiting %s for straggling webhooks", straggle)
	return sleepCtx(ctx, straggle)
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n] + "…"
	}
	return s
}
