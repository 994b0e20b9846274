package replicate

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Header names of the Standard Webhooks scheme Replicate signs with.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// Tolerance is how far a delivery's timestamp may be from now. Older or
// newer deliveries are refused: that is what stops a captured request from
// being replayed later.
const Tolerance = 5 * time.Minute

// SecretPrefix starts every Replicate signing key.
const SecretPrefix = "whsec_"

// Errors Verify returns. Each says what was wrong in words fit for a 401 body.
var (
	ErrNoKey           = errors.New("no signing key configured")
	ErrMissingHeaders  = errors.New("missing webhook-id, webhook-timestamp or webhook-signature header")
	ErrDuplicateHeader = errors.New("a webhook header is repeated; send each of webhook-id, webhook-timestamp and webhook-signature once")
	ErrBadTimestamp    = errors.New("webhook-timestamp is not a Unix time in seconds")
	ErrTooOld          = errors.New("webhook-timestamp is more than 5 minutes old (expired or replayed)")
	ErrTooNew          = errors.New("webhook-timestamp is more than 5 minutes in the future (check the clock)")
	ErrNoSignature     = errors.New("no valid signature")
)

// Key is one decoded signing key.
type Key struct {
	secret []byte
}

// Fingerprint names a key without revealing it: the first 12 hex digits of
// the SHA-256 of the decoded key.
func (k Key) Fingerprint() string {
	sum := sha256.Sum256(k.secret)
	return hex.EncodeToString(sum[:6])
}

// Equal reports whether two keys are the same, in constant time.
func (k Key) Equal(o Key) bool { return hmac.Equal(k.secret, o.secret) }

// ParseKey decodes one "whsec_<base64>" key.
func ParseKey(s string) (Key, error) {
	s = strings.TrimSpace(s)
	b64, ok := strings.CutPrefix(s, SecretPrefix)
	if !ok {
		return Key{}, errors.New(`a signing key starts with "whsec_"; get yours with GET https://api.replicate.com/v1/webhooks/default/secret`)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return Key{}, fmt.Errorf("signing key is not whsec_ followed by standard base64: %w", err)
	}
	if len(raw) < 24 || len(raw) > 64 {
		return Key{}, fmt.Errorf("signing key decodes to %d bytes; Replicate's keys are 24 (Standard Webhooks allows 24 to 64)", len(raw))
	}
	return Key{secret: raw}, nil
}

// NewKey wraps raw key bytes (the simulator makes its own).
func NewKey(raw []byte) Key { return Key{secret: append([]byte(nil), raw...)} }

// Secret returns the key in whsec_ form, to hand to a process that must
// sign or verify with it. Never log it.
func (k Key) Secret() string { return SecretPrefix + base64.StdEncoding.EncodeToString(k.secret) }

// String names the key by its fingerprint, never its secret, so a key that
// reaches a log line or an error through %v or %s shows nothing usable.
func (k Key) String() string { return "whsec_ key " + k.Fingerprint() }

// GoString is String for %#v, which would otherwise print the secret bytes.
func (k Key) GoString() string { return "replicate.Key{" + k.Fingerprint() + "}" }

// LogValue is String for log/slog.
func (k Key) LogValue() slog.Value { return slog.StringValue(k.String()) }

// Keys is the set of accepted signing keys. Several are accepted at once so
// a key can be rotated without refusing deliveries signed with the old one.
type Keys []Key

// ParseKeys parses keys separated by spaces or commas. An empty string gives
// no keys, which makes Verify refuse everything.
func ParseKeys(s string) (Keys, error) {
	var ks Keys
	for i, f := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
		k, err := ParseKey(f)
		if err != nil {
			return nil, fmt.Errorf("key %d: %w", i+1, err)
		}
		ks = append(ks, k)
	}
	return ks, nil
}

// Contains reports whether k is one of ks.
func (ks Keys) Contains(k Key) bool {
	for _, x := range ks {
		if x.Equal(k) {
			return true
		}
	}
	return false
}

// Fingerprints lists the keys' fingerprints, for logs and the dashboard.
func (ks Keys) Fingerprints() []string {
	out := make([]string, len(ks))
	for i, k := range ks {
		out[i] = k.Fingerprint()
	}
	return out
}

// Sign returns the webhook-signature value for one delivery: "v1,<base64>".
func (k Key) Sign(id string, timestamp int64, body []byte) string {
	return "v1," + base64.StdEncoding.EncodeToString(k.mac(id, strconv.FormatInt(timestamp, 10), body))
}

func (k Key) mac(id, ts string, body []byte) []byte {
	m := hmac.New(sha256.New, k.secret)
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// SignRequest sets the three webhook headers on h for body.
func (k Key) SignRequest(h http.Header, id string, ts time.Time, body []byte) {
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts.Unix(), 10))
	h.Set(HeaderSignature, k.Sign(id, ts.Unix(), body))
}

// Verify checks one delivery's headers against body, the raw bytes exactly as
// received. It returns nil only if a v1 signature made with one of the keys
// matches and the timestamp is within Tolerance of now. Unknown signature
// versions (such as v1a) are skipped; comparisons are constant-time.
func (ks Keys) Verify(h http.Header, body []byte, now time.Time) error {
	if len(ks) == 0 {
		return ErrNoKey
	}
	ids, tss, sigs := h.Values(HeaderID), h.Values(HeaderTimestamp), h.Values(HeaderSignature)
	if len(ids) > 1 || len(tss) > 1 || len(sigs) > 1 {
		return ErrDuplicateHeader
	}
	if len(ids) == 0 || len(tss) == 0 || len(sigs) == 0 || ids[0] == "" || tss[0] == "" || strings.TrimSpace(sigs[0]) == "" {
		return ErrMissingHeaders
	}
	id, tsText, sig := ids[0], tss[0], sigs[0]
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil || ts < 0 {
		return ErrBadTimestamp
	}
	// Compare in seconds, so a huge timestamp cannot overflow a time.Duration.
	switch d := now.Unix() - ts; {
	case d > int64(Tolerance/time.Second):
		return ErrTooOld
	case d < -int64(Tolerance/time.Second):
		return ErrTooNew
	}
	macs := make([][]byte, len(ks))
	for i, k := range ks {
		macs[i] = k.mac(id, tsText, body)
	}
	for _, entry := range strings.Fields(sig) {
		version, b64, ok := strings.Cut(entry, ",")
		if !ok || version != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || len(got) != sha256.Size {
			continue
		}
		for _, want := range macs {
			if hmac.Equal(got, want) {
				return nil
			}
		}
	}
	return ErrNoSignature
}
