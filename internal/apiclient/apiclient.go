// Package apiclient is a Go client of trainhook's own JSON API (the README's
// API section): start or register trainings, list, read, cancel and watch
// model records. The command line and the end-to-end tests use it.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/trainhook/trainhook/internal/training"
)

// DefaultTimeout bounds each ordinary request (not event streams).
const DefaultTimeout = 30 * time.Second

// maxResponse bounds what is read of one answer: a page of 1000 models with
// their log tails is a few MB.
const maxResponse = 64 << 20

// Client calls one trainhook server. Its fields may be set after New and
// before first use; it is then safe for concurrent use.
type Client struct {
	base  *url.URL // no trailing slash
	token string

	// HTTPClient sends the requests. Its Timeout should be 0: Timeout below
	// bounds ordinary requests, and event streams must stay open.
	HTTPClient *http.Client
	// Timeout bounds each ordinary request (DefaultTimeout when 0).
	Timeout time.Duration
	// UserAgent defaults to "trainhook-apiclient".
	UserAgent string
}

// New returns a client of the server at baseURL (such as
// http://localhost:8080, optionally with a path prefix). token, when not
// empty, is sent as "Authorization: Bearer <token>".
func New(baseURL, token string) (*Client, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("server URL %q: want an http(s) URL such as http://localhost:8080", baseURL)
	}
	if strings.ContainsAny(token, " \t\r\n") {
		return nil, errors.New("API token contains white space: set it to the exact value of the server's TRAINHOOK_API_TOKEN")
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return &Client{base: u, token: token, HTTPClient: &http.Client{}}, nil
}

// BaseURL returns the server's URL as the client uses it.
func (c *Client) BaseURL() string { return c.base.String() }

// HasToken reports whether the client sends an API token.
func (c *Client) HasToken() bool { return c.token != "" }

// Error is an error answer from the server: its status code and its
// {"error": "..."} message, which says what was wrong and how to fix it.
type Error struct {
	Method     string
	Path       string
	StatusCode int
	Message    string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %d %s: %s", e.Method, e.Path, e.StatusCode, http.StatusText(e.StatusCode), e.Message)
}

// UnreachableError means no HTTP answer came back at all: the server is not
// running, the URL is wrong, or the network is in the way.
type UnreachableError struct {
	URL string // the server's base URL
	Err error
}

func (e *UnreachableError) Error() string {
	return "cannot reach trainhook at " + e.URL + ": " + e.Err.Error()
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// StatusCode returns the HTTP status of an *Error in err's chain, else 0.
func StatusCode(err error) int {
	var e *Error
	if errors.As(err, &e) {
		return e.StatusCode
	}
	return 0
}

// IsNotFound reports a 404: no such model.
func IsNotFound(err error) bool { return StatusCode(err) == http.StatusNotFound }

// IsUnauthorized reports a 401: the API token is missing or wrong.
func IsUnauthorized(err error) bool { return StatusCode(err) == http.StatusUnauthorized }

// IsConflict reports a 409, such as cancelling a model that is already final.
func IsConflict(err error) bool { return StatusCode(err) == http.StatusConflict }

// IsUnreachable reports whether err is an *UnreachableError.
func IsUnreachable(err error) bool {
	var e *UnreachableError
	return errors.As(err, &e)
}

// ModelDetail is a model with its history, as GET /api/models/{id} returns it.
type ModelDetail struct {
	training.Model
	History []training.HistoryEntry `json:"history"`
}

// StartRequest asks the server to start a training on Replicate.
type StartRequest struct {
	Name        string          `json:"name,omitempty"`
	Trainer     string          `json:"trainer"`     // owner/model or owner/model:<64 hex>
	Destination string          `json:"destination"` // owner/name; created if missing
	Input       json.RawMessage `json:"input,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	// IdempotencyKey, when set, makes a repeat return the same model
	// instead of starting a second training.
	IdempotencyKey string `json:"-"`
}

// RegisterRequest hands the server a training started elsewhere.
type RegisterRequest struct {
	Name           string          `json:"name,omitempty"`
	TrainingID     string          `json:"training_id"`
	Metadata       json.RawMessage `json:"metadata,omitempty"`
	IdempotencyKey string          `json:"-"`
}

// Outcome says what a create request did.
type Outcome string

const (
	// Created: the model is new (201); a started training is Training.
	Created Outcome = "created"
	// Replayed: the idempotency key was used before; this is that model (200).
	Replayed Outcome = "replayed"
	// InDoubt: Replicate could not be reached (202); the model is Pending and
	// the server finds out, or starts it, on its own.
	InDoubt Outcome = "in_doubt"
)

// CreateResult is the answer to Start or Register.
type CreateResult struct {
	Model   training.Model `json:"model"`
	Outcome Outcome        `json:"outcome"`
	// Warning is the server's explanation when Outcome is InDoubt.
	Warning string `json:"warning,omitempty"`
}

// RefusedError is Replicate's refusal of a training (422): the model
// exists and is Failed with Replicate's message.
type RefusedError struct {
	Message string
	Model   training.Model
}

func (e *RefusedError) Error() string { return e.Message }

// Start asks the server to start a training. Replicate refusing it is a
// *RefusedError; other error answers are *Error.
func (c *Client) Start(ctx context.Context, r StartRequest) (CreateResult, error) {
	return c.create(ctx, r, r.IdempotencyKey)
}

// Register starts tracking a training created elsewhere.
func (c *Client) Register(ctx context.Context, r RegisterRequest) (CreateResult, error) {
	return c.create(ctx, r, r.IdempotencyKey)
}

func (c *Client) create(ctx context.Context, body any, idemKey string) (CreateResult, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return CreateResult{}, fmt.Errorf("encode request: %w", err)
	}
	return c.post(ctx, "/api/models", b, idemKey)
}

// post sends a request that starts a training and reads the answer.
func (c *Client) post(ctx context.Context, path string, b []byte, idemKey string) (CreateResult, error) {
	h := http.Header{}
	if idemKey != "" {
		h.Set("Idempotency-Key", idemKey)
	}
	resp, data, err := c.do(ctx, http.MethodPost, path, nil, b, h)
	if err != nil {
		return CreateResult{}, err
	}
	switch resp.StatusCode {
	case http.StatusCreated, http.StatusOK:
		res := CreateResult{Outcome: Created}
		if resp.StatusCode == http.StatusOK || resp.Header.Get("Idempotent-Replayed") == "true" {
			res.Outcome = Replayed
		}
		return res, decode(resp, data, &res.Model)
	case http.StatusAccepted:
		var v struct {
			training.Model
			Warning string `json:"warning"`
		}
		if err := decode(resp, data, &v); err != nil {
			return CreateResult{}, err
		}
		return CreateResult{Model: v.Model, Outcome: InDoubt, Warning: v.Warning}, nil
	case http.StatusUnprocessableEntity:
		var v struct {
			Error string         `json:"error"`
			Model training.Model `json:"model"`
		}
		if err := decode(resp, data, &v); err != nil {
			return CreateResult{}, err
		}
		return CreateResult{}, &RefusedError{Message: v.Error, Model: v.Model}
	}
	return CreateResult{}, c.errorOf(resp, data)
}

// ListOptions filter GET /api/models. Zero values mean no filter and the
// server's default page size (50).
type ListOptions struct {
	Status training.Status
	Query  string // name contains
	Limit  int    // 1 to 1000
	Cursor string // NextCursor of the previous page
	// Archived lists removed models too.
	Archived bool
}

// ModelPage is one page of models, newest first.
type ModelPage struct {
	Models     []training.Model `json:"models"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

// Models lists models newest first.
func (c *Client) Models(ctx context.Context, o ListOptions) (ModelPage, error) {
	q := url.Values{}
	if o.Status != "" {
		q.Set("status", string(o.Status))
	}
	if o.Query != "" {
		q.Set("q", o.Query)
	}
	if o.Limit != 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Cursor != "" {
		q.Set("cursor", o.Cursor)
	}
	if o.Archived {
		q.Set("archived", "true")
	}
	var p ModelPage
	err := c.getJSON(ctx, "/api/models", q, &p)
	return p, err
}

// Model returns one model with its history; IsNotFound(err) for an unknown id.
func (c *Client) Model(ctx context.Context, id string) (ModelDetail, error) {
	if err := checkID(id); err != nil {
		return ModelDetail{}, err
	}
	var d ModelDetail
	err := c.getJSON(ctx, "/api/models/"+url.PathEscape(id), nil, &d)
	return d, err
}

// Remove removes a finished model from lists; its record and history are
// kept. IsConflict(err) when the model is still running.
func (c *Client) Remove(ctx context.Context, id string) (training.Model, error) {
	if err := checkID(id); err != nil {
		return training.Model{}, err
	}
	resp, data, err := c.do(ctx, http.MethodDelete, "/api/models/"+url.PathEscape(id), nil, nil, nil)
	if err != nil {
		return training.Model{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return training.Model{}, c.errorOf(resp, data)
	}
	var m training.Model
	return m, decode(resp, data, &m)
}

// Retry starts a new training like a Failed or Canceled model's, as a new
// model linked to it (RetryOf). It answers like Start.
func (c *Client) Retry(ctx context.Context, id, idemKey string) (CreateResult, error) {
	if err := checkID(id); err != nil {
		return CreateResult{}, err
	}
	return c.post(ctx, "/api/models/"+url.PathEscape(id)+"/retry", nil, idemKey)
}

// ModelWebhook is GET /api/models/{id}/webhook's answer.
type ModelWebhook struct {
	ModelID    string `json:"model_id"`
	TrainingID string `json:"training_id,omitempty"`
	Token      string `json:"token"`
	URL        string `json:"url,omitempty"` // "" in polling mode
}

// Webhook returns a model's webhook token (and URL in webhook mode), which
// binds deliveries to the model.
func (c *Client) Webhook(ctx context.Context, id string) (ModelWebhook, error) {
	if err := checkID(id); err != nil {
		return ModelWebhook{}, err
	}
	var w ModelWebhook
	err := c.getJSON(ctx, "/api/models/"+url.PathEscape(id)+"/webhook", nil, &w)
	return w, err
}

// CancelResult is the answer to Cancel.
type CancelResult struct {
	Model training.Model `json:"model"`
	// Confirmed is true when Replicate confirmed at once (200) and the
	// model is Canceled; false (202) until a webhook or poll finishes it.
	Confirmed bool `json:"confirmed"`
}

// Cancel cancels the model's training on Replicate. IsConflict(err) when the
// model is already final or has no training yet.
func (c *Client) Cancel(ctx context.Context, id string) (CancelResult, error) {
	if err := checkID(id); err != nil {
		return CancelResult{}, err
	}
	resp, data, err := c.do(ctx, http.MethodPost, "/api/models/"+url.PathEscape(id)+"/cancel", nil, nil, nil)
	if err != nil {
		return CancelResult{}, err
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return CancelResult{}, c.errorOf(resp, data)
	}
	res := CancelResult{Confirmed: resp.StatusCode == http.StatusOK}
	return res, decode(resp, data, &res.Model)
}

// ServerStatus is what GET /api/status reports of the running server's
// configuration; never a secret.
type ServerStatus struct {
	Mode               string   `json:"mode"` // "webhook" or "polling"
	ModeReason         string   `json:"mode_reason"`
	WebhookURL         string   `json:"webhook_url,omitempty"`
	SigningKeys        []string `json:"signing_key_fingerprints"`
	ReplicateBaseURL   string   `json:"replicate_base_url"`
	ReplicateToken     bool     `json:"replicate_token_set"`
	Database           string   `json:"database"`
	MaxBody            int64    `json:"max_body_bytes"`
	APITokenRequired   bool     `json:"api_token_required"`
	CORSAllowedOrigins []string `json:"cors_allowed_origins"`
}

// Status returns the server's running configuration.
func (c *Client) Status(ctx context.Context) (ServerStatus, error) {
	var s ServerStatus
	err := c.getJSON(ctx, "/api/status", nil, &s)
	return s, err
}

func checkID(id string) error {
	if strings.TrimSpace(id) == "" || strings.ContainsAny(id, "/?#") {
		return fmt.Errorf("%q is not a model id", id)
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, path string, q url.Values, out any) error {
	resp, data, err := c.do(ctx, http.MethodGet, path, q, nil, nil)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return c.errorOf(resp, data)
	}
	return decode(resp, data, out)
}

func (c *Client) url(path string, q url.Values) string {
	u := *c.base
	u.Path += path
	u.RawQuery = q.Encode()
	return u.String()
}

func (c *Client) newRequest(ctx context.Context, method, path string, q url.Values, body []byte, h http.Header) (*http.Request, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path, q), rd)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	for k, v := range h {
		req.Header[k] = v
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if req.Header.Get("Accept") == "" {
		req.Header.Set("Accept", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	ua := c.UserAgent
	if ua == "" {
		ua = "trainhook-apiclient"
	}
	req.Header.Set("User-Agent", ua)
	return req, nil
}

func (c *Client) httpClient() *http.Client {
	if c.HTTPClient != nil {
		return c.HTTPClient
	}
	return http.DefaultClient
}

// do sends one ordinary request and reads its whole answer.
func (c *Client) do(ctx context.Context, method, path string, q url.Values, body []byte, h http.Header) (*http.Response, []byte, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := c.newRequest(ctx, method, path, q, body, h)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.httpClient().Do(req)
	if err != nil {
		return nil, nil, c.transportError(ctx, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponse+1))
	if err != nil {
		return nil, nil, c.transportError(ctx, fmt.Errorf("read the answer to %s %s: %w", method, path, err))
	}
	if len(data) > maxResponse {
		return nil, nil, fmt.Errorf("%s %s: the answer is larger than %d bytes", method, path, maxResponse)
	}
	return resp, data, nil
}

// transportError keeps the caller's cancellation as it is and calls every
// other failure to get an answer unreachable.
func (c *Client) transportError(ctx context.Context, err error) error {
	if ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return err
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err // the URL is said once, by UnreachableError
	}
	return &UnreachableError{URL: c.BaseURL(), Err: err}
}

// errorOf turns an error answer into an *Error. An answer that is not
// trainhook's JSON (a proxy's page, another service) says so.
func (c *Client) errorOf(resp *http.Response, data []byte) error {
	e := &Error{Method: resp.Request.Method, Path: resp.Request.URL.Path, StatusCode: resp.StatusCode}
	var body struct {
		Error string `json:"error"`
	}
	if isJSON(resp) && json.Unmarshal(data, &body) == nil && body.Error != "" {
		e.Message = body.Error
	} else {
		e.Message = notTrainhook(c.BaseURL(), resp, data)
	}
	return e
}

func decode(resp *http.Response, data []byte, out any) error {
	if !isJSON(resp) {
		return &Error{Method: resp.Request.Method, Path: resp.Request.URL.Path, StatusCode: resp.StatusCode,
			Message: notTrainhook(resp.Request.URL.Scheme+"://"+resp.Request.URL.Host, resp, data)}
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s %s: decode the answer: %w", resp.Request.Method, resp.Request.URL.Path, err)
	}
	return nil
}

func isJSON(resp *http.Response) bool {
	mt, _, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func notTrainhook(base string, resp *http.Response, data []byte) string {
	ct := resp.Header.Get("Content-Type")
	if ct == "" {
		ct = "no Content-Type"
	}
	snippet := strings.Join(strings.Fields(string(data)), " ")
	if len(snippet) > 80 {
		snippet = snippet[:80] + "..."
	}
	msg := fmt.Sprintf("the answer is not trainhook's JSON (%s", ct)
	if snippet != "" {
		msg += ": " + strconv.Quote(snippet)
	}
	return msg + "): is " + base + " the address of trainhook serve?"
}
