package replicate

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

type vector struct {
	Name, Secret, ID, Body, Signature string
	Timestamp                         int64
}

func loadVectors(t testing.TB) []vector {
	b, err := os.ReadFile("testdata/vectors.json")
	if err != nil {
		t.Fatal(err)
	}
	var vs []vector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

func headers(id string, ts int64, sig string) http.Header {
	h := http.Header{}
	h.Set(HeaderID, id)
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, sig)
	return h
}

func TestVerifyVectors(t *testing.T) {
	for _, v := range loadVectors(t) {
		t.Run(v.Name, func(t *testing.T) {
			k, err := ParseKey(v.Secret)
			if err != nil {
				t.Fatal(err)
			}
			if got := k.Sign(v.ID, v.Timestamp, []byte(v.Body)); got != v.Signature {
				t.Fatalf("Sign = %s, want %s", got, v.Signature)
			}
			now := time.Unix(v.Timestamp, 0)
			if err := (Keys{k}).Verify(headers(v.ID, v.Timestamp, v.Signature), []byte(v.Body), now); err != nil {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func TestVerifyRefusals(t *testing.T) {
	v := loadVectors(t)[0]
	k, _ := ParseKey(v.Secret)
	other, _ := ParseKey("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	body := []byte(v.Body)
	now := time.Unix(v.Timestamp, 0)
	good := v.Signature
	cases := []struct {
		name string
		keys Keys
		h    http.Header
		body []byte
		now  time.Time
		want error
	}{
		{"tampered body", Keys{k}, headers(v.ID, v.Timestamp, good), []byte(`{"test":2432232314}`), now, ErrNoSignature},
		{"wrong key", Keys{other}, headers(v.ID, v.Timestamp, good), body, now, ErrNoSignature},
		{"no keys", nil, headers(v.ID, v.Timestamp, good), body, now, ErrNoKey},
		{"other id", Keys{k}, headers("msg_other", v.Timestamp, good), body, now, ErrNoSignature},
		{"expired", Keys{k}, headers(v.ID, v.Timestamp, good), body, now.Add(5*time.Minute + time.Second), ErrTooOld},
		{"future", Keys{k}, headers(v.ID, v.Timestamp, good), body, now.Add(-5*time.Minute - time.Second), ErrTooNew},
		{"huge timestamp", Keys{k}, headers(v.ID, 1<<62, good), body, now, ErrTooNew},
		{"non-numeric timestamp", Keys{k}, http.Header{"Webhook-Id": {v.ID}, "Webhook-Timestamp": {"yesterday"}, "Webhook-Signature": {good}}, body, now, ErrBadTimestamp},
		{"missing signature", Keys{k}, http.Header{"Webhook-Id": {v.ID}, "Webhook-Timestamp": {"1614265330"}}, body, now, ErrMissingHeaders},
		{"empty signature", Keys{k}, headers(v.ID, v.Timestamp, "  "), body, now, ErrMissingHeaders},
		{"missing id", Keys{k}, http.Header{"Webhook-Timestamp": {"1614265330"}, "Webhook-Signature": {good}}, body, now, ErrMissingHeaders},
		{"duplicated signature header", Keys{k}, http.Header{"Webhook-Id": {v.ID}, "Webhook-Timestamp": {"1614265330"}, "Webhook-Signature": {good, good}}, body, now, ErrDuplicateHeader},
		{"wrong version tag", Keys{k}, headers(v.ID, v.Timestamp, strings.Replace(good, "v1,", "v2,", 1)), body, now, ErrNoSignature},
		{"v1a only", Keys{k}, headers(v.ID, v.Timestamp, strings.Replace(good, "v1,", "v1a,", 1)), body, now, ErrNoSignature},
		{"truncated base64", Keys{k}, headers(v.ID, v.Timestamp, good[:len(good)-4]), body, now, ErrNoSignature},
		{"no comma", Keys{k}, headers(v.ID, v.Timestamp, strings.Replace(good, ",", "", 1)), body, now, ErrNoSignature},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.keys.Verify(c.h, c.body, c.now); !errors.Is(err, c.want) {
				t.Fatalf("Verify = %v, want %v", err, c.want)
			}
		})
	}
}

func TestVerifyAccepts(t *testing.T) {
	v := loadVectors(t)[0]
	k, _ := ParseKey(v.Secret)
	old, _ := ParseKey("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	body := []byte(v.Body)
	now := time.Unix(v.Timestamp, 0)
	cases := []struct {
		name string
		keys Keys
		sig  string
		now  time.Time
	}{
		{"several entries, one matches", Keys{k}, "v1a,AAAA v1,bm90IGl0 " + v.Signature, now},
		{"extra spaces", Keys{k}, "  " + v.Signature + "   ", now},
		{"rotation: second key matches", Keys{old, k}, v.Signature, now},
		{"just inside the window (old)", Keys{k}, v.Signature, now.Add(5 * time.Minute)},
		{"just inside the window (future)", Keys{k}, v.Signature, now.Add(-5 * time.Minute)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.keys.Verify(headers(v.ID, v.Timestamp, c.sig), body, c.now); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseKeys(t *testing.T) {
	ks, err := ParseKeys("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw, whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD")
	if err != nil || len(ks) != 2 {
		t.Fatalf("%v %d", err, len(ks))
	}
	if ks[0].Fingerprint() == ks[1].Fingerprint() || len(ks[0].Fingerprint()) != 12 {
		t.Fatal("fingerprints")
	}
	if ks, err := ParseKeys(""); err != nil || len(ks) != 0 {
		t.Fatal("empty")
	}
	for _, bad := range []string{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_!!!", "whsec_YWJj"} {
		if _, err := ParseKeys(bad); err == nil {
			t.Errorf("ParseKeys(%q) accepted", bad)
		} else if strings.Contains(err.Error(), bad[min(6, len(bad)):]) && len(bad) > 10 {
			t.Errorf("error repeats the secret: %v", err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k, _ := ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	body := []byte(strings.Repeat(`{"logs": " 40%|####      | 400/1000 [00:12<00:18, 33.1it/s]\n"}`, 64))[:4096]
	now := time.Unix(1700000000, 0)
	h := headers("msg_1", now.Unix(), k.Sign("msg_1", now.Unix(), body))
	ks := Keys{k}
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if err := ks.Verify(h, body, now); err != nil {
			b.Fatal(err)
		}
	}
}

func FuzzVerify(f *testing.F) {
	k, _ := ParseKey("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	f.Add("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", []byte(`{"test": 2432232314}`))
	f.Add("x", "-1", "v1,", []byte{})
	f.Add("x", "99999999999999999999", "v1a,xx v1,yy", []byte("{}"))
	f.Fuzz(func(t *testing.T, id, ts, sig string, body []byte) {
		h := http.Header{}
		h.Set(HeaderID, id)
		h.Set(HeaderTimestamp, ts)
		h.Set(HeaderSignature, sig)
		now := time.Unix(1614265330, 0)
		err := (Keys{k}).Verify(h, body, now)
		if err == nil {
			// Accepted only if the signature really is ours.
			n, _ := strconv.ParseInt(ts, 10, 64)
			if !strings.Contains(sig, k.Sign(id, n, body)[3:]) {
				t.Fatalf("accepted a signature that is not ours: %q", sig)
			}
		}
	})
}
