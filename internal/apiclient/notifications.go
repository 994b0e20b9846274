package apiclient

import (
	"context"
	"net/http"
	"net/url"
	"strconv"

	"github.com/trainhook/trainhook/internal/store"
)

// NotificationOptions filter Notifications.
type NotificationOptions struct {
	Status  string // pending, delivered, failed; "" for any
	ModelID string
	Before  int64 // only ids lower than this
	Limit   int   // 1..1000; 0: the server's default (100)
}

// NotificationDetail is one notification with every attempt to send it.
type NotificationDetail struct {
	store.Notification
	AttemptLog []store.NotificationAttempt `json:"attempt_log"`
}

// Notifications lists notifications to the app, newest first.
func (c *Client) Notifications(ctx context.Context, o NotificationOptions) ([]store.Notification, error) {
	q := url.Values{}
	if o.Status != "" {
		q.Set("status", o.Status)
	}
	if o.ModelID != "" {
		q.Set("model", o.ModelID)
	}
	if o.Before > 0 {
		q.Set("before", strconv.FormatInt(o.Before, 10))
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	var out struct {
		Notifications []store.Notification `json:"notifications"`
	}
	err := c.getJSON(ctx, "/api/notifications", q, &out)
	return out.Notifications, err
}

// Notification returns one notification with its attempts; IsNotFound(err)
// for an unknown id.
func (c *Client) Notification(ctx context.Context, id int64) (NotificationDetail, error) {
	var d NotificationDetail
	err := c.getJSON(ctx, "/api/notifications/"+strconv.FormatInt(id, 10), nil, &d)
	return d, err
}

// ResendNotification sends a notification again (same webhook-id, a new
// retry window).
func (c *Client) ResendNotification(ctx context.Context, id int64) (store.Notification, error) {
	resp, data, err := c.do(ctx, http.MethodPost, "/api/notifications/"+strconv.FormatInt(id, 10)+"/resend", nil, nil, nil)
	if err != nil {
		return store.Notification{}, err
	}
	if resp.StatusCode != http.StatusAccepted {
		return store.Notification{}, c.errorOf(resp, data)
	}
	var n store.Notification
	return n, decode(resp, data, &n)
}
