package store

// NotificationEventType is the live-update event (GET /api/events) that
// says a notification's state changed.
const NotificationEventType = "notification"

// NotificationChange is the data of a "notification" live-update event:
// enough for a dashboard to update its row. It leaves out the URL (it may
// hold a token) and the body (the model).
type NotificationChange struct {
	ID         int64  `json:"id"`
	ModelID    string `json:"model_id"`
	Type       string `json:"type"`
	Status     string `json:"status"`
	Attempts   int    `json:"attempts"`
	LastError  string `json:"last_error,omitempty"`
	LastStatus int    `json:"last_status,omitempty"`
}

// ChangeOf is the live-update event data of n as stored.
func ChangeOf(n Notification) NotificationChange {
	return NotificationChange{ID: n.ID, ModelID: n.ModelID, Type: n.Type, Status: n.Status,
		Attempts: n.Attempts, LastError: n.LastError, LastStatus: n.LastStatus}
}
