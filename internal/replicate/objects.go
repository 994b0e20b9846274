package replicate

import (
	"encoding/json"
	"time"
)

// Account is the account a token belongs to (GET /v1/account).
type Account struct {
	Type      string `json:"type"` // "user" or "organization"
	Username  string `json:"username"`
	Name      string `json:"name"`
	GithubURL string `json:"github_url"`
}

// Model is a model object (GET /v1/models/{owner}/{name}). Null string
// fields decode as "".
type Model struct {
	URL           string        `json:"url"`
	Owner         string        `json:"owner"`
	Name          string        `json:"name"`
	Description   string        `json:"description"`
	Visibility    string        `json:"visibility"`
	GithubURL     string        `json:"github_url"`
	PaperURL      string        `json:"paper_url"`
	LicenseURL    string        `json:"license_url"`
	CoverImageURL string        `json:"cover_image_url"`
	RunCount      int64         `json:"run_count"`
	IsOfficial    bool          `json:"is_official"`
	LatestVersion *ModelVersion `json:"latest_version"`
}

// ModelVersion is one version of a model.
type ModelVersion struct {
	ID            string          `json:"id"`
	CreatedAt     *time.Time      `json:"created_at"`
	CogVersion    string          `json:"cog_version"`
	OpenAPISchema json.RawMessage `json:"openapi_schema,omitempty"`
}

// CreateModelRequest is the body of POST /v1/models. Owner, Name,
// Visibility ("public" or "private") and Hardware (e.g. "cpu") are required.
type CreateModelRequest struct {
	Owner       string `json:"owner"`
	Name        string `json:"name"`
	Visibility  string `json:"visibility"`
	Hardware    string `json:"hardware"`
	Description string `json:"description,omitempty"`
}

// Webhook event names for CreateTrainingRequest.WebhookEventsFilter.
const (
	EventStart     = "start"
	EventOutput    = "output"
	EventLogs      = "logs"
	EventCompleted = "completed"
)

// CreateTrainingRequest is the body of POST .../versions/{id}/trainings.
type CreateTrainingRequest struct {
	// Destination is the "owner/name" of an existing model the caller owns;
	// a successful training pushes a new version to it.
	Destination string `json:"destination"`
	// Input is passed to the trainer: a json.RawMessage, a map or a struct.
	Input any `json:"input"`
	// Webhook is the URL Replicate POSTs the training to; optional.
	Webhook string `json:"webhook,omitempty"`
	// WebhookEventsFilter limits which events are sent (EventStart, ...).
	WebhookEventsFilter []string `json:"webhook_events_filter,omitempty"`
}

// Page is one page of a list. Next and Previous are absolute URLs ("" when
// there is none); pass Next to ListTrainings as it is.
type Page struct {
	Next     string     `json:"next"`
	Previous string     `json:"previous"`
	Results  []Training `json:"results"`
}

// webhookSecret is the body of GET /v1/webhooks/default/secret.
type webhookSecret struct {
	Key string `json:"key"`
}
