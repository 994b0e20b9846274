package sqlite

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

// tqdmLog is a training log like Replicate's, n bytes or a little more.
func tqdmLog(n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "flux_train_replicate: %3d%%|%-10s| %d/1000 [%02d:%02d<05:12,  1.30s/it, lr: 4e-04 loss: %.3e]\n",
			i%101, strings.Repeat("#", i%11), i*10%1000, i/60%60, i%60, 0.4-float64(i)/1e4)
	}
	return b.String()
}

func TestPackRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 4096)
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	payload, _ := json.Marshal(map[string]any{"id": "abc", "status": "succeeded", "logs": tqdmLog(4000)})
	for _, tc := range []struct {
		name   string
		in     []byte
		packed bool
	}{
		{"empty", nil, false},
		{"small JSON", []byte(`{"id":"a","status":"succeeded"}`), false},
		{"a training payload", payload, true},
		{"incompressible", random, false},
		{"small, starting with NUL", []byte("\x00abc"), true},
		{"looks packed", []byte(packMark + "not snappy"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := pack(tc.in)
			if got := bytes.HasPrefix(p, []byte(packMark)); got != tc.packed {
				t.Fatalf("packed = %v, want %v (%d bytes → %d)", got, tc.packed, len(tc.in), len(p))
			}
			if tc.packed && len(tc.in) >= packMin && len(p) > len(tc.in)/2 {
				t.Errorf("a training payload packed %d → %d bytes; want under half", len(tc.in), len(p))
			}
			out, err := unpack(p)
			if err != nil || !bytes.Equal(out, tc.in) {
				t.Fatalf("unpack(pack(x)) = %q, %v; want x", out, err)
			}
			s, err := unpackText(string(p))
			if err != nil || s != string(tc.in) {
				t.Fatalf("unpackText = %q, %v", s, err)
			}
			if v := asBytes(packText(string(tc.in))); !bytes.Equal(v, p) {
				t.Errorf("packText stores %q, pack %q", v, p)
			}
		})
	}
	if _, err := unpack([]byte(packMark + "\xff\xff\xff\xff\xff")); err == nil {
		t.Error("unpack of a corrupt value: no error")
	}
}

func asBytes(v any) []byte {
	switch v := v.(type) {
	case string:
		return []byte(v)
	case []byte:
		return v
	}
	return nil
}

// Payloads and log tails are stored compressed and read back as they were;
// values stored plain (by earlier versions) still read.
func TestLargeValuesStoredCompressed(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Now().UTC()
	payload, _ := json.Marshal(map[string]any{"id": "tr-1", "status": "succeeded", "logs": tqdmLog(4000)})
	tail := tqdmLog(3500)
	m := training.Model{ID: training.NewID(now), Name: "packed", TrainingID: "tr-1", Status: training.Training,
		CreatedAt: now, UpdatedAt: now}
	var did int64
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := tx.InsertModel(ctx, &m); err != nil {
			return err
		}
		read, err := tx.ModelByTrainingID(ctx, "tr-1")
		if err != nil {
			return err
		}
		read.Status, read.RemoteStatus, read.LogTail, read.LogLen = training.Ready, "succeeded", tail, len(tail)
		read.Output = json.RawMessage(`{"version":"v","weights":"w"}`)
		if err := tx.UpdateModel(ctx, &read); err != nil {
			return err
		}
		did, err = tx.AddDelivery(ctx, training.Delivery{WebhookID: "msg_1", ReceivedAt: now, Verified: true,
			Outcome: "applied", TrainingID: "tr-1", ModelID: m.ID, Payload: payload})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var payloadLen, tailLen int
	if err := s.r.QueryRowContext(ctx, "SELECT length(payload) FROM deliveries WHERE id = ?", did).Scan(&payloadLen); err != nil {
		t.Fatal(err)
	}
	if err := s.r.QueryRowContext(ctx, "SELECT length(log_tail) FROM models WHERE id = ?", m.ID).Scan(&tailLen); err != nil {
		t.Fatal(err)
	}
	if payloadLen*2 > len(payload) || tailLen*2 > len(tail) {
		t.Errorf("stored %d of %d payload bytes and %d of %d log tail bytes; want each under half", payloadLen, len(payload), tailLen, len(tail))
	}
	d, err := s.GetDelivery(ctx, did)
	if err != nil || !bytes.Equal(d.Payload, payload) {
		t.Fatalf("GetDelivery payload differs (%d bytes, %v)", len(d.Payload), err)
	}
	got, err := s.GetModel(ctx, m.ID)
	if err != nil || got.LogTail != tail || got.Status != training.Ready || string(got.Output) != `{"version":"v","weights":"w"}` {
		t.Fatalf("GetModel: status %s, output %s, log tail equal %v, %v", got.Status, got.Output, got.LogTail == tail, err)
	}

	// As an earlier version stored them: plain.
	if _, err := s.wc.ExecContext(ctx, "UPDATE deliveries SET payload = ? WHERE id = ?", payload, did); err != nil {
		t.Fatal(err)
	}
	if _, err := s.wc.ExecContext(ctx, "UPDATE models SET log_tail = ? WHERE id = ?", tail, m.ID); err != nil {
		t.Fatal(err)
	}
	if d, err := s.GetDelivery(ctx, did); err != nil || !bytes.Equal(d.Payload, payload) {
		t.Errorf("plain payload read back differs: %v", err)
	}
	if got, err := s.GetModel(ctx, m.ID); err != nil || got.LogTail != tail {
		t.Errorf("plain log tail read back differs: %v", err)
	}
}

// UpdateModel writes only what reports change when the rest is as read in
// the same transaction, and everything otherwise.
func TestUpdateModelWritesChangedFixedFields(t *testing.T) {
	s, _ := openTemp(t)
	ctx := context.Background()
	now := time.Now().UTC()
	m := training.Model{ID: training.NewID(now), Name: "fixed", TrainingID: "tr-2", Status: training.Pending,
		Metadata: json.RawMessage(`{"a":1}`), CreatedAt: now, UpdatedAt: now}
	err := s.Write(ctx, func(tx store.Tx) error {
		if err := tx.InsertModel(ctx, &m); err != nil {
			return err
		}
		read, err := tx.ModelByID(ctx, m.ID)
		if err != nil {
			return err
		}
		read.Status = training.Training // state only
		if err := tx.UpdateModel(ctx, &read); err != nil {
			return err
		}
		read.Name, read.Metadata = "renamed", json.RawMessage(`{"a":2}`) // fixed fields too
		read.Status = training.Ready
		return tx.UpdateModel(ctx, &read)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.GetModel(ctx, m.ID)
	if err != nil || got.Name != "renamed" || string(got.Metadata) != `{"a":2}` || got.Status != training.Ready || got.Version != 3 {
		t.Fatalf("model = name %q, metadata %s, status %s, version %d, %v; want renamed, {\"a\":2}, Ready, 3",
			got.Name, got.Metadata, got.Status, got.Version, err)
	}
}
