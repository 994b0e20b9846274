package replicate

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// A key printed by accident (%v, %s, %+v, %#v, an error, a log attribute)
// shows its fingerprint, never its secret; Secret is the only way to get
// the whsec_ form.
func TestKeyPrintsFingerprintNotSecret(t *testing.T) {
	const whsec = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	k, err := ParseKey(whsec)
	if err != nil {
		t.Fatal(err)
	}
	if k.Secret() != whsec {
		t.Fatalf("Secret() = %q, want %q", k.Secret(), whsec)
	}
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(whsec, SecretPrefix))
	var logged bytes.Buffer
	slog.New(slog.NewTextHandler(&logged, nil)).Info("key", "key", k, "keys", Keys{k})
	slog.New(slog.NewJSONHandler(&logged, nil)).Info("key", "key", k, "keys", Keys{k})
	shown := map[string]string{
		"String":      k.String(),
		"%v":          fmt.Sprintf("%v", k),
		"%s":          fmt.Sprintf("key %s", k),
		"%+v":         fmt.Sprintf("%+v", k),
		"%#v":         fmt.Sprintf("%#v", k),
		"%v of Keys":  fmt.Sprintf("%v", Keys{k}),
		"%#v of Keys": fmt.Sprintf("%#v", Keys{k}),
		"error":       fmt.Errorf("with %v", k).Error(),
		"wrapped":     errors.Join(fmt.Errorf("key %s", k)).Error(),
		"slog":        logged.String(),
	}
	for how, s := range shown {
		if strings.Contains(s, whsec[len(SecretPrefix):]) || strings.Contains(s, strings.TrimRight(whsec[len(SecretPrefix):], "=")) ||
			bytes.Contains([]byte(s), raw) || strings.Contains(s, fmt.Sprintf("%x", raw)) || strings.Contains(s, fmt.Sprint(raw)) {
			t.Errorf("%s shows the secret: %s", how, s)
		}
		if !strings.Contains(s, k.Fingerprint()) {
			t.Errorf("%s = %q, want the fingerprint %s", how, s, k.Fingerprint())
		}
	}
}
