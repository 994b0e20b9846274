package replicate

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// FuzzParseKeys feeds REPLICATE_WEBHOOK_SECRET-like text to ParseKeys: it
// never panics, what it accepts round-trips, and its errors never repeat the
// key material they refuse (an error is logged; a key must not be).
//
//	go test -run '^$' -fuzz '^FuzzParseKeys$' ./internal/replicate
func FuzzParseKeys(f *testing.F) {
	f.Add("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	f.Add("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	f.Add("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw!")
	f.Add("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	f.Add("whsec_")
	f.Add("whsec_AAAA")
	f.Fuzz(func(t *testing.T, s string) {
		ks, err := ParseKeys(s)
		if err != nil {
			for _, field := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\t' || r == '\n' }) {
				material := strings.TrimPrefix(strings.TrimSpace(field), SecretPrefix)
				if len(material) >= 12 && strings.Contains(err.Error(), material) {
					t.Fatalf("the error repeats the key material %q: %v", material, err)
				}
			}
			return
		}
		for _, k := range ks {
			again, err := ParseKey(k.Secret())
			if err != nil || !again.Equal(k) {
				t.Fatalf("key %s does not round-trip: %v", k.Fingerprint(), err)
			}
			if fp := k.Fingerprint(); len(fp) != 12 {
				t.Fatalf("fingerprint %q", fp)
			}
		}
	})
}

// FuzzVerifyRoundTrip signs a delivery, then checks that Verify accepts it
// as signed and refuses it once any signed byte (id, timestamp or body)
// changes, or when another key verifies it.
//
//	go test -run '^$' -fuzz '^FuzzVerifyRoundTrip$' ./internal/replicate
func FuzzVerifyRoundTrip(f *testing.F) {
	f.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", int64(0), []byte(`{"id":"r7k2m9x4c1rm80cq3ftw6n8e5a","status":"succeeded"}`), uint16(3))
	f.Add("x", int64(299), []byte{}, uint16(0))
	f.Add("msg_\u00e9\u0000", int64(-299), []byte("\xff\xfe"), uint16(100))
	key, _ := ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	other, _ := ParseKey("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	now := time.Unix(1_750_000_000, 0)
	f.Fuzz(func(t *testing.T, id string, skew int64, body []byte, flip uint16) {
		if id == "" || strings.ContainsAny(id, "\r\n") || skew < -300 || skew > 300 {
			return // not a delivery Replicate could send within the window
		}
		at := now.Add(time.Duration(skew) * time.Second)
		h := http.Header{}
		key.SignRequest(h, id, at, body)
		if err := (Keys{key}).Verify(h, body, now); err != nil {
			t.Fatalf("refused its own signature: %v", err)
		}
		if err := (Keys{other}).Verify(h, body, now); err == nil {
			t.Fatal("another key accepted the signature")
		}
		if len(body) > 0 {
			changed := append([]byte(nil), body...)
			changed[int(flip)%len(changed)] ^= 1 + byte(flip>>8)%255
			if err := (Keys{key}).Verify(h, changed, now); err == nil {
				t.Fatal("accepted a changed body")
			}
		}
		h2 := h.Clone()
		h2.Set(HeaderID, id+"x")
		if err := (Keys{key}).Verify(h2, body, now); err == nil {
			t.Fatal("accepted another webhook-id")
		}
		h3 := h.Clone()
		h3.Set(HeaderTimestamp, h.Get(HeaderTimestamp)+"0")
		if err := (Keys{key}).Verify(h3, body, now); err == nil {
			t.Fatal("accepted another timestamp")
		}
	})
}
