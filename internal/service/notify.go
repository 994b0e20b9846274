package service

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// Notify says which status changes are written to the notifications outbox,
// and for which URLs.
type Notify struct {
	URLs   []string // TRAINHOOK_NOTIFY_URL
	Events []string // event types to write (model.ready, ...)
	// AllowURL says whether a model's own notify_url may be used (its
	// origin is in TRAINHOOK_NOTIFY_ALLOWED_ORIGINS); nil: none may.
	AllowURL func(string) bool
	// Kick, when set, is called after a commit that wrote notifications, so
	// the sender need not wait for its next poll.
	Kick func()
}

// EventType is the notification type of a move to status, or "" for a
// status that has none (Pending: nothing has happened yet).
func EventType(s training.Status) string {
	switch s {
	case training.Training, training.Ready, training.Failed, training.Canceled:
		return "model." + strings.ToLower(string(s))
	}
	return ""
}

// PayloadModel is the model as a notification carries it: as GET
// /api/models/{id} shows it, without the history and the log tail (a
// payload should stay small; the app can fetch the log).
func PayloadModel(m training.Model) ([]byte, error) {
	m.LogTail = ""
	return json.Marshal(m)
}

// notify writes the outbox rows for a move of m, in the transaction that
// makes it: the event is stored if and only if the change is.
func (s *Service) notify(ctx context.Context, tx store.Tx, m training.Model, now time.Time) error {
	typ := EventType(m.Status)
	if typ == "" || !slices.Contains(s.notifyCfg.Events, typ) {
		return nil
	}
	urls := s.notifyCfg.URLs
	if s.notifyCfg.AllowURL != nil {
		own, err := tx.ModelNotifyURL(ctx, m.ID)
		if err != nil {
			return err
		}
		// Checked again now: an origin the operator has since removed from
		// the allow-list is no longer called.
		if own != "" && s.notifyCfg.AllowURL(own) && !slices.Contains(urls, own) {
			urls = append(slices.Clip(urls), own)
		}
	}
	if len(urls) == 0 {
		return nil
	}
	body, err := PayloadModel(m)
	if err != nil {
		return fmt.Errorf("encode model %s for its notification: %w", m.ID, err)
	}
	// A ULID: unique, sortable, and without the '.' the signed string
	// uses as its separator.
	// The model's version orders its events without a query: every
	// change raises it, and this one is committed with the event.
	ev := store.NewNotification{EventID: "evt_" + training.NewID(now), ModelID: m.ID, Type: typ, Sequence: m.Version,
		At: now, Model: body, URLs: urls}
	if err := tx.AddNotification(ctx, ev); err != nil {
		return fmt.Errorf("write %s notification of model %s: %w", typ, m.ID, err)
	}
	if s.notifyCfg.Kick != nil {
		s.afterCommit = append(s.afterCommit, s.notifyCfg.Kick)
	}
	return nil
}

// NotificationDetail is a notification with every attempt to send it.
type NotificationDetail struct {
	store.Notification
	AttemptLog []store.NotificationAttempt `json:"attempt_log"`
}

// Notifications lists notifications, newest first.
func (s *Service) Notifications(ctx context.Context, f store.NotificationFilter) ([]store.Notification, error) {
	switch f.Status {
	case "", store.NotifyPending, store.NotifyDelivered, store.NotifyFailed:
	default:
		return nil, errorf(Invalid, "status %q is not one of pending, delivered, failed", truncate(f.Status, 40))
	}
	if f.Limit <= 0 {
		f.Limit = 100
	}
	ns, err := s.store.ListNotifications(ctx, f)
	if err != nil {
		return nil, err
	}
	if ns == nil {
		ns = []store.Notification{}
	}
	return ns, nil
}

// Notification returns one notification with its attempts.
func (s *Service) Notification(ctx context.Context, id int64) (NotificationDetail, error) {
	n, as, err := s.store.GetNotification(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return NotificationDetail{}, errorf(NotFound, "no notification with id %d", id)
	}
	if err != nil {
		return NotificationDetail{}, err
	}
	if as == nil {
		as = []store.NotificationAttempt{}
	}
	return NotificationDetail{n, as}, nil
}

// ResendNotification sends a notification again, with the same webhook-id
// (the app dedupes on it) and a new retry window, whatever its status.
func (s *Service) ResendNotification(ctx context.Context, id int64) (store.Notification, error) {
	n, err := s.store.ResendNotification(ctx, id, s.now())
	if errors.Is(err, store.ErrNotFound) {
		return store.Notification{}, errorf(NotFound, "no notification with id %d", id)
	}
	if err != nil {
		return store.Notification{}, err
	}
	s.broker.Publish(store.NotificationEventType, store.ChangeOf(n))
	if s.notifyCfg.Kick != nil {
		s.notifyCfg.Kick()
	}
	s.log.Info("notification resent", "notification_id", id, "event_id", n.EventID, "url", n.URL)
	return n, nil
}

// maxNotifyURL bounds a model's own notification URL.
const maxNotifyURL = 2048

// checkNotifyURL refuses a model's own notify_url unless its origin is
// allowed: otherwise the API could make trainhook POST to any host,
// internal ones included.
func (s *Service) checkNotifyURL(u string) error {
	if u == "" {
		return nil
	}
	if s.notifyCfg.AllowURL == nil {
		return errorf(Unprocessable, `"notify_url" is not accepted by this server: set TRAINHOOK_NOTIFY_ALLOWED_ORIGINS (and TRAINHOOK_NOTIFY_SECRET) to the origins it may point at`)
	}
	if len(u) > maxNotifyURL || !s.notifyCfg.AllowURL(u) {
		return errorf(Unprocessable, `"notify_url" %q is not allowed: it must be an http(s) URL without credentials whose origin (scheme://host:port) is listed in TRAINHOOK_NOTIFY_ALLOWED_ORIGINS`, truncate(u, 80))
	}
	return nil
}
