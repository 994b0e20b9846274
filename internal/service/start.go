package service

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/replicate"
	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Replicate is what the service needs of Replicate's API.
type Replicate interface {
	GetModel(ctx context.Context, owner, name string) (replicate.Model, error)
	LatestVersion(ctx context.Context, owner, name string) (replicate.ModelVersion, error)
	CreateModel(ctx context.Context, r replicate.CreateModelRequest) (replicate.Model, error)
	CreateTraining(ctx context.Context, trainer string, r replicate.CreateTrainingRequest) (replicate.Training, error)
	GetTraining(ctx context.Context, id string) (replicate.Training, error)
	CancelTraining(ctx context.Context, id string) (replicate.Training, error)
	ListTrainings(ctx context.Context, pageURL string) (replicate.Page, error)
}

// StartRequest asks trainhook to start a training on Replicate and track it.
type StartRequest struct {
	Name           string
	Trainer        string // owner/model:version, or owner/model for its latest version
	Destination    string // owner/name; created as a private model if missing
	Input          json.RawMessage
	Metadata       json.RawMessage
	IdempotencyKey string
	NotifyURL      string // the model's own notification URL; see Notify.AllowURL

	retryOf string // set by Retry: the model this one retries
}

// ErrRefused wraps Replicate's refusal of a training: the model is Failed
// with Replicate's message, and the API answers with both.
type ErrRefused struct {
	Model training.Model
	Err   error
}

func (e *ErrRefused) Error() string { return "Replicate refused the training: " + e.Model.Error }
func (e *ErrRefused) Unwrap() error { return e.Err }

var (
	refPattern     = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,99}/[a-z0-9][a-z0-9._-]{0,99}$`)
	versionPattern = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// startLease is the default of Options.StartLease: how long a start may
// take before the poller treats the model as a start in doubt and recovers
// it. A create sends nothing after its lease (less createMargin), so a
// slow create is never recovered while still running, however long the
// client would retry after 429s.
const startLease = 3 * time.Minute

// createMargin is the time left of a start's lease after which a create
// sends no more requests: the last one's time to reach Replicate and be
// done, before a poller may list trainings to recover the start.
func createMargin(lease time.Duration) time.Duration { return min(30*time.Second, lease/6) }

// MaxInput caps a training's input JSON.
const MaxInput = 256 << 10

func (req *StartRequest) validate() error {
	req.Trainer, req.Destination = strings.TrimSpace(req.Trainer), strings.TrimSpace(req.Destination)
	ref, version, hasVersion := strings.Cut(req.Trainer, ":")
	if !refPattern.MatchString(ref) || hasVersion && !versionPattern.MatchString(version) {
		return errorf(Invalid, `"trainer" must be owner/model or owner/model:<64 hex version id>, such as ostris/flux-dev-lora-trainer; got %q`, truncate(req.Trainer, 80))
	}
	if !refPattern.MatchString(req.Destination) {
		return errorf(Invalid, `"destination" must be owner/name of a model of yours (lower case letters, digits, '-', '_' or '.'), such as acme/portrait-lora; got %q`, truncate(req.Destination, 80))
	}
	in := json.RawMessage(strings.TrimSpace(string(req.Input)))
	if len(in) == 0 || string(in) == "null" {
		in = json.RawMessage("{}")
	}
	if len(in) > MaxInput {
		return errorf(Invalid, `"input" is %d bytes; the limit is %d: pass large data (images) as URLs`, len(in), MaxInput)
	}
	if in[0] != '{' || !json.Valid(in) {
		return errorf(Invalid, `"input" must be a JSON object of the trainer's inputs, such as {"input_images": "https://.../data.zip", "steps": 1000}`)
	}
	req.Input = in
	if req.Name == "" {
		req.Name = req.Destination
	}
	if err := validName(req.Name); err != nil {
		return err
	}
	if len(req.IdempotencyKey) > MaxIdemKeyLen {
		return errorf(Invalid, "Idempotency-Key is longer than %d characters", MaxIdemKeyLen)
	}
	return nil
}

// Start saves the model as Pending, makes sure the destination exists,
// creates the training on Replicate, and moves the model to Training. If
// Replicate refuses (4xx), the model is Failed and *ErrRefused returned. If
// the outcome of the create is unknown (network error, 5xx), the model stays
// Pending and the poller recovers it: it lists recent trainings to find the
// one created, and creates it again only if there is none, so one model
// never gets two trainings.
func (s *Service) Start(ctx context.Context, req StartRequest) (training.Model, bool, error) {
	if s.replicate == nil {
		return training.Model{}, false, errorf(Invalid, "this server cannot start trainings: set REPLICATE_API_TOKEN")
	}
	if err := req.validate(); err != nil {
		return training.Model{}, false, err
	}
	if err := s.checkNotifyURL(req.NotifyURL); err != nil {
		return training.Model{}, false, err
	}
	md, err := ValidMetadata(req.Metadata)
	if err != nil {
		return training.Model{}, false, err
	}
	res, err := s.write(ctx, func(ctx context.Context, tx store.Tx) (Result, []training.Model, error) {
		if req.IdempotencyKey != "" {
			prev, err := tx.ModelByIdempotencyKey(ctx, req.IdempotencyKey)
			if err == nil {
				return Result{Outcome: outcomeReplayed, Model: &prev}, nil, nil
			} else if !errors.Is(err, store.ErrNotFound) {
				return Result{}, nil, fmt.Errorf("look up idempotency key: %w", err)
			}
		}
		now := s.now()
		lease := now.Add(s.startLease)
		m := training.Model{
			ID: training.NewID(now), Name: req.Name, Trainer: req.Trainer, Destination: req.Destination,
			Input: req.Input, Metadata: md, Status: training.Pending, IdempotencyKey: req.IdempotencyKey,
			CreatedAt: now, UpdatedAt: now, NextCheckAt: &lease, RetryOf: req.retryOf,
		}
		if err := tx.InsertModel(ctx, &m); err != nil {
			return Result{}, nil, fmt.Errorf("insert model: %w", err)
		}
		if req.NotifyURL != "" {
			if err := tx.SetModelNotifyURL(ctx, m.ID, req.NotifyURL); err != nil {
				return Result{}, nil, err
			}
		}
		note := "start requested: " + req.Trainer + " → " + req.Destination
		if req.retryOf != "" {
			note = "retry of model " + req.retryOf + ": " + req.Trainer + " → " + req.Destination
		}
		err := tx.AddHistory(ctx, training.HistoryEntry{ModelID: m.ID, To: training.Pending, Decision: training.Move,
			Source: training.SourceAPI, At: now, Note: note})
		return Result{Outcome: outcomeInserted, Model: &m}, []training.Model{m}, err
	})
	if errors.Is(err, store.ErrDuplicate) {
		return training.Model{}, false, errorf(Conflict, "Idempotency-Key %q is in use by a request running now; retry shortly", req.IdempotencyKey)
	}
	if err != nil {
		return training.Model{}, false, err
	}
	m, replayed := *res.Model, res.Outcome == outcomeReplayed
	if replayed {
		return m, true, nil
	}
	m, err = s.create(ctx, m)
	return m, false, err
}

// create runs the Replicate side of a start for a Pending model without a
// training id: destination, then the training. It is also how the poller
// retries a start that it found was never created.
//
// m.NextCheckAt is the end of the start's lease (Start and the recoveries
// take it before calling create). Every request is sent before it, less
// createMargin: once the lease runs out a poller may recover the start,
// find no training and create one, and a create of ours still retrying
// after 429s (the client waits up to a minute each, five times) would then
// make a second training for the model.
func (s *Service) create(ctx context.Context, m training.Model) (training.Model, error) {
	end := s.now().Add(s.startLease)
	if m.NextCheckAt != nil && m.NextCheckAt.Before(end) {
		end = *m.NextCheckAt
	}
	cctx, cancel := context.WithDeadline(ctx, end.Add(-createMargin(s.startLease)))
	defer cancel()
	trainer, err := s.resolveTrainer(cctx, m.Trainer)
	if err == nil {
		err = s.ensureDestination(cctx, m.Destination)
	}
	var t replicate.Training
	if err == nil {
		req := replicate.CreateTrainingRequest{Destination: m.Destination, Input: m.Input}
		if s.webhookURL != "" {
			req.Webhook = s.ModelWebhookURL(m.ID)
			req.WebhookEventsFilter = s.webhookEvents
		}
		t, err = s.replicate.CreateTraining(cctx, trainer, req)
	}
	if err != nil && errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
		err = fmt.Errorf("the start's lease of %s ran out before Replicate took the create (%w); the poller will look for the training and create it only if there is none", s.startLease, err)
	}
	if err != nil {
		return s.startFailed(ctx, m, err)
	}
	obs := t.Observation(training.SourceAPI, "create", s.now())
	obs.ModelID = m.ID
	res, err := s.Observe(ctx, obs)
	if err != nil {
		// The training exists on Replicate; the poller binds it by listing.
		return m, fmt.Errorf("save training id %s of model %s: %w", t.ID, m.ID, err)
	}
	if res.Model == nil {
		return m, fmt.Errorf("save training id %s of model %s: %s", t.ID, m.ID, res.Outcome)
	}
	s.log.Info("training started", "model_id", m.ID, "training_id", t.ID, "trainer", trainer, "destination", m.Destination)
	return *res.Model, nil
}

func (s *Service) resolveTrainer(ctx context.Context, trainer string) (string, error) {
	if strings.Contains(trainer, ":") {
		return trainer, nil
	}
	owner, name, _ := strings.Cut(trainer, "/")
	v, err := s.replicate.LatestVersion(ctx, owner, name)
	if err != nil {
		return "", fmt.Errorf("resolve the latest version of trainer %s: %w", trainer, err)
	}
	return trainer + ":" + v.ID, nil
}

// ensureDestination creates the destination as a private model when
// Replicate says it is missing, and reuses it when it exists (409).
func (s *Service) ensureDestination(ctx context.Context, dest string) error {
	if _, ok := s.destinations.Load(dest); ok {
		return nil // models are not deleted under a running service; spare the API call
	}
	owner, name, _ := strings.Cut(dest, "/")
	_, err := s.replicate.GetModel(ctx, owner, name)
	if err == nil {
		s.destinations.Store(dest, true)
		return nil
	}
	if !replicate.IsNotFound(err) {
		return fmt.Errorf("look up destination %s: %w", dest, err)
	}
	_, err = s.replicate.CreateModel(ctx, replicate.CreateModelRequest{
		Owner: owner, Name: name, Visibility: "private", Hardware: "cpu",
		Description: "Fine-tunes created by trainhook",
	})
	if err != nil && replicate.StatusCode(err) == http.StatusForbidden {
		return fmt.Errorf("%s: %w", s.notYourOwner(ctx, owner, name), err)
	}
	if err != nil && !replicate.IsConflict(err) {
		return fmt.Errorf("create destination model %s: %w", dest, err)
	}
	s.log.Info("destination model ready", "destination", dest, "created", err == nil)
	s.destinations.Store(dest, true)
	return nil
}

// notYourOwner says why Replicate refused (403) to create a destination:
// the token's account may not create models under owner. It names the
// account when Replicate says which it is (one more call, on this failure
// only).
func (s *Service) notYourOwner(ctx context.Context, owner, name string) string {
	msg := fmt.Sprintf("you may not create models under %s: the destination must belong to the account of REPLICATE_API_TOKEN (or an organization it belongs to)", owner)
	acc, ok := s.replicate.(interface {
		Account(context.Context) (replicate.Account, error)
	})
	if !ok {
		return msg
	}
	a, err := acc.Account(ctx)
	if err != nil || a.Username == "" || a.Username == owner {
		return msg
	}
	return fmt.Sprintf("you may not create models under %s: the token belongs to %s, so use a destination such as %s/%s", owner, a.Username, a.Username, name)
}

// startFailed records why a start did not go through. A refusal (4xx) fails
// the model; anything else leaves it Pending for the poller to recover.
func (s *Service) startFailed(ctx context.Context, m training.Model, cause error) (training.Model, error) {
	code := replicate.StatusCode(cause)
	if code >= 400 && code < 500 && code != http.StatusTooManyRequests && code != http.StatusRequestTimeout {
		res, err := s.failStart(ctx, m, cause.Error())
		if err != nil {
			return m, err
		}
		return res, &ErrRefused{Model: res, Err: cause}
	}
	s.log.Warn("start in doubt: the poller will find out whether the training was created", "model_id", m.ID, "err", cause)
	// The create has ended, one way or the other: recovery may begin soon.
	// Not a failed check: a recovery that ends here counted its attempt
	// when it took the lease.
	if err := s.Defer(ctx, m.ID, s.now().Add(s.recoverAfter)); err != nil {
		s.log.Error("reschedule a start in doubt; it is recovered when its lease ends", "model_id", m.ID, "err", err)
	}
	return m, &Error{Kind: Upstream, Msg: fmt.Sprintf("could not reach Replicate to start the training (%v); model %s stays Pending and trainhook will finish starting it, without creating a second training", cause, m.ID), Err: cause}
}

// failStart moves a Pending model to Failed through Apply, like any report.
func (s *Service) failStart(ctx context.Context, m training.Model, msg string) (training.Model, error) {
	res, err := s.Observe(ctx, training.Observation{
		ModelID: m.ID, Remote: training.RemoteFailed, Error: msg,
		Source: training.SourceAPI, SourceRef: "start",
	})
	if err != nil {
		return m, err
	}
	if res.Model != nil {
		return *res.Model, nil
	}
	return m, nil
}

// Cancel asks Replicate to cancel a model's training. The model becomes
// Canceled when Replicate confirms: by this response, a webhook or a poll.
func (s *Service) Cancel(ctx context.Context, id string) (training.Model, error) {
	if s.replicate == nil {
		return training.Model{}, errorf(Invalid, "this server cannot cancel trainings: set REPLICATE_API_TOKEN")
	}
	d, err := s.Model(ctx, id)
	if err != nil {
		return training.Model{}, err
	}
	m := d.Model
	switch {
	case m.Status.Terminal():
		return m, errorf(Conflict, "model %s is already %s; there is nothing to cancel", m.ID, m.Status)
	case m.TrainingID == "":
		return m, errorf(Conflict, "model %s has no training on Replicate yet; retry once it is Training", m.ID)
	}
	t, err := s.replicate.CancelTraining(ctx, m.TrainingID)
	if err != nil && replicate.IsNotFound(err) {
		// Nothing runs on Replicate to cancel: end the model now rather
		// than leave it to the poller's grace period.
		return s.failNotFound(ctx, m)
	}
	if err != nil {
		return m, &Error{Kind: Upstream, Msg: fmt.Sprintf("Replicate did not cancel training %s: %v", m.TrainingID, err), Err: err}
	}
	res, err := s.Observe(ctx, t.Observation(training.SourceAPI, "cancel", s.now()))
	if err != nil {
		return m, err
	}
	if res.Model != nil {
		m = *res.Model
	}
	return m, nil
}

// ModelWebhookURL is the webhook URL a model's training is created with: it
// binds deliveries to the model and carries a token only this server can make.
func (s *Service) ModelWebhookURL(modelID string) string {
	return s.webhookURL + "?model=" + url.QueryEscape(modelID) + "&token=" + s.ModelToken(modelID)
}

// ModelToken is an HMAC of the model id under the server's key.
func (s *Service) ModelToken(modelID string) string {
	m := hmac.New(sha256.New, s.tokenKey)
	m.Write([]byte("trainhook-model-webhook\x00" + modelID))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil)[:24])
}

// CheckToken reports, in constant time, whether token is modelID's token.
func (s *Service) CheckToken(modelID, token string) bool {
	if len(s.tokenKey) == 0 || modelID == "" {
		return false
	}
	return hmac.Equal([]byte(s.ModelToken(modelID)), []byte(token))
}

// LoadTokenKey sets the key behind per-model tokens: the configured one, or
// one generated once and kept in the database so every instance and every
// restart agree.
func (s *Service) LoadTokenKey(ctx context.Context, configured string) error {
	if configured != "" {
		s.tokenKey = []byte(configured)
		return nil
	}
	fresh := make([]byte, 32)
	if _, err := rand.Read(fresh); err != nil {
		return fmt.Errorf("generate webhook token key: %w", err)
	}
	var stored string
	err := s.store.Write(ctx, func(tx store.Tx) error {
		var err error
		stored, err = tx.PutSettingIfAbsent(ctx, "webhook_token_key", base64.StdEncoding.EncodeToString(fresh))
		return err
	})
	if err != nil {
		return fmt.Errorf("load webhook token key: %w", err)
	}
	key, err := base64.StdEncoding.DecodeString(stored)
	if err != nil {
		return fmt.Errorf("webhook token key in the database is corrupt: %w", err)
	}
	s.tokenKey = key
	return nil
}
