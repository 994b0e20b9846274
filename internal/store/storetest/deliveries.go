package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/trainhook/trainhook/internal/store"
	"github.com/trainhook/trainhook/internal/training"
)

func addDeliveries(t *testing.T, s store.Store, ds []training.Delivery) []training.Delivery {
	t.Helper()
	out := slices.Clone(ds)
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for i := range out {
			id, err := tx.AddDelivery(ctx, out[i])
			if err != nil {
				return err
			}
			out[i].ID = id
		}
		return nil
	})
	return out
}

func deliveryIDs(ds []training.Delivery) []int64 {
	out := make([]int64, len(ds))
	for i, d := range ds {
		out[i] = d.ID
	}
	return out
}

func testDeliveries(t *testing.T, s store.Store) {
	ctx := t.Context()
	// A raw body is bytes, not text: keep it exactly, zero bytes and all.
	binary := []byte{0x00, 0xff, 0xfe, '{', 0x00, '}'}
	body := []byte(`{"id":"tr-1","status":"succeeded","output":{"version":"v"}}`)
	in := []training.Delivery{
		{WebhookID: "msg_1", ReceivedAt: at(1 * time.Second), Verified: true, Outcome: "applied",
			TrainingID: "tr-1", ModelID: "m1", RemoteStatus: "starting", Payload: body,
			Timestamp: "1748779201", Signature: "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4= v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="},
		{WebhookID: "msg_2", ReceivedAt: at(2 * time.Second), Verified: false, Reason: "bad signature",
			Outcome: "refused", ModelID: "m-does-not-exist", Payload: binary},
		{WebhookID: "msg_1", ReceivedAt: at(3 * time.Second), Verified: true, Outcome: "duplicate",
			TrainingID: "tr-1", ModelID: "m1", RemoteStatus: "starting", Payload: body,
			Timestamp: "1748779203", Signature: "v1,abc", ReplayOf: 424242},
		{WebhookID: "msg_4", ReceivedAt: at(4 * time.Second), Verified: true, Outcome: "held",
			TrainingID: "tr-2", RemoteStatus: "processing"},
		{WebhookID: "", ReceivedAt: at(5 * time.Second), Verified: false, Reason: "missing webhook-id header",
			Outcome: "refused"},
		{WebhookID: "msg_6", ReceivedAt: at(6 * time.Second), Verified: true, Outcome: "applied",
			TrainingID: "tr-3", ModelID: "m2", RemoteStatus: "succeeded", Payload: body},
	}
	ds := addDeliveries(t, s, in)
	for i := 1; i < len(ds); i++ {
		if ds[i].ID <= ds[i-1].ID || ds[0].ID <= 0 {
			t.Fatalf("AddDelivery ids %v: want positive and increasing", deliveryIDs(ds))
		}
	}
	for _, want := range ds {
		got, err := s.GetDelivery(ctx, want.ID)
		if err != nil {
			t.Fatalf("GetDelivery(%d): %v", want.ID, err)
		}
		report(t, fmt.Sprintf("delivery %d", want.ID), diffDelivery(got, want))
	}

	newestFirst := func(pick func(training.Delivery) bool) []training.Delivery {
		var out []training.Delivery
		for i := len(ds) - 1; i >= 0; i-- {
			if pick(ds[i]) {
				out = append(out, ds[i])
			}
		}
		return out
	}
	yes, no := true, false
	for _, tc := range []struct {
		name   string
		filter store.DeliveryFilter
		want   []training.Delivery
	}{
		{"all", store.DeliveryFilter{Limit: 100}, newestFirst(func(training.Delivery) bool { return true })},
		{"verified", store.DeliveryFilter{Verified: &yes, Limit: 100}, newestFirst(func(d training.Delivery) bool { return d.Verified })},
		{"refused", store.DeliveryFilter{Verified: &no, Limit: 100}, newestFirst(func(d training.Delivery) bool { return !d.Verified })},
		{"outcome", store.DeliveryFilter{Outcome: "applied", Limit: 100}, newestFirst(func(d training.Delivery) bool { return d.Outcome == "applied" })},
		{"model", store.DeliveryFilter{ModelID: "m1", Limit: 100}, newestFirst(func(d training.Delivery) bool { return d.ModelID == "m1" })},
		{"model and outcome", store.DeliveryFilter{ModelID: "m1", Outcome: "duplicate", Limit: 100}, []training.Delivery{ds[2]}},
		{"refused and model", store.DeliveryFilter{Verified: &no, ModelID: "m-does-not-exist", Limit: 100}, []training.Delivery{ds[1]}},
		{"nothing matches", store.DeliveryFilter{Outcome: "no such outcome", Limit: 100}, nil},
		{"limit", store.DeliveryFilter{Limit: 2}, []training.Delivery{ds[5], ds[4]}},
		{"before", store.DeliveryFilter{Before: ds[3].ID, Limit: 100}, []training.Delivery{ds[2], ds[1], ds[0]}},
		{"before and outcome", store.DeliveryFilter{Before: ds[5].ID, Outcome: "applied", Limit: 100}, []training.Delivery{ds[0]}},
	} {
		got, err := s.ListDeliveries(ctx, tc.filter)
		if err != nil {
			t.Fatalf("%s: ListDeliveries: %v", tc.name, err)
		}
		if !slices.Equal(deliveryIDs(got), deliveryIDs(tc.want)) {
			t.Errorf("%s: ListDeliveries ids = %v, want %v", tc.name, deliveryIDs(got), deliveryIDs(tc.want))
			continue
		}
		// Listed deliveries are whole, payload included.
		for i := range got {
			report(t, fmt.Sprintf("%s: listed delivery %d", tc.name, got[i].ID), diffDelivery(got[i], tc.want[i]))
		}
	}
}

// Paging by cursor visits every delivery once, newest first, even when new
// deliveries arrive between pages.
func testDeliveryCursor(t *testing.T, s store.Store) {
	ctx := t.Context()
	mk := func(n, from int) []training.Delivery {
		var ds []training.Delivery
		for i := range n {
			ds = append(ds, training.Delivery{WebhookID: fmt.Sprintf("msg_%d", from+i), ReceivedAt: at(time.Duration(from+i) * time.Second),
				Verified: true, Outcome: "applied"})
		}
		return ds
	}
	ds := addDeliveries(t, s, mk(23, 0))
	var seen []int64
	var before int64
	for page := 0; ; page++ {
		got, err := s.ListDeliveries(ctx, store.DeliveryFilter{Before: before, Limit: 5})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 0 {
			break
		}
		if len(got) > 5 {
			t.Fatalf("page of %d deliveries, limit 5", len(got))
		}
		seen = append(seen, deliveryIDs(got)...)
		before = got[len(got)-1].ID
		if page == 1 {
			addDeliveries(t, s, mk(3, 100)) // newer: not part of this walk
		}
	}
	want := deliveryIDs(ds)
	slices.Reverse(want)
	if !slices.Equal(seen, want) {
		t.Errorf("paged ids = %v, want %v", seen, want)
	}
}

func testClaimWebhookID(t *testing.T, s store.Store) {
	ctx := t.Context()
	claim := func(tx store.Tx, id string) bool {
		t.Helper()
		ok, err := tx.ClaimWebhookID(ctx, id, base)
		if err != nil {
			t.Fatalf("ClaimWebhookID(%s): %v", id, err)
		}
		return ok
	}
	write(t, s, func(_ context.Context, tx store.Tx) error {
		if !claim(tx, "msg_1") {
			t.Error("first claim of msg_1 refused")
		}
		if claim(tx, "msg_1") {
			t.Error("second claim of msg_1 in the same transaction accepted")
		}
		if !claim(tx, "msg_2") {
			t.Error("first claim of msg_2 refused")
		}
		return nil
	})
	write(t, s, func(_ context.Context, tx store.Tx) error {
		if claim(tx, "msg_1") {
			t.Error("claim of msg_1 in a later transaction accepted")
		}
		if !claim(tx, "MSG_1") {
			t.Error("webhook ids are case-sensitive: claim of MSG_1 refused")
		}
		return nil
	})
}

func testHeld(t *testing.T, s store.Store) {
	obs := []training.Observation{
		{TrainingID: "tr-1", ModelID: "m1", Remote: "starting", Source: training.SourceWebhook, SourceRef: "msg_1",
			Logs: "booting\n", At: at(3 * time.Second)},
		{TrainingID: "tr-2", Remote: "processing", Source: training.SourcePoll, At: at(time.Second), WebURL: "https://replicate.com/p/tr-2"},
		// Held later, with an earlier At: TakeHeld returns them in the order held.
		{TrainingID: "tr-1", Remote: "processing", Logs: "step 1 <b>&</b>\n", StartedAt: ptr(at(time.Second)),
			Source: training.SourceWebhook, SourceRef: "msg_2", At: at(2 * time.Second)},
		{TrainingID: "tr-1", Remote: "succeeded", Output: json.RawMessage(`{"version": "v1", "weights": "https://x/w.tar"}`),
			Error: "", StartedAt: ptr(at(time.Second)), CompletedAt: ptr(at(9 * time.Second)),
			Source: training.SourceWebhook, SourceRef: "msg_3", At: at(10 * time.Second).In(time.FixedZone("X", -5*3600))},
		{TrainingID: "tr-1", Remote: "failed", Error: `CUDA "out of memory"`, Source: training.SourcePoll, At: at(11 * time.Second)},
	}
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, o := range obs[:3] {
			if err := tx.HoldObservation(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
	write(t, s, func(ctx context.Context, tx store.Tx) error {
		for _, o := range obs[3:] {
			if err := tx.HoldObservation(ctx, o); err != nil {
				return err
			}
		}
		return nil
	})
	take := func(id string) []training.Observation {
		t.Helper()
		var got []training.Observation
		write(t, s, func(ctx context.Context, tx store.Tx) error {
			var err error
			got, err = tx.TakeHeld(ctx, id)
			return err
		})
		return got
	}
	check := func(id string, got, want []training.Observation) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("TakeHeld(%s) returned %d observations, want %d", id, len(got), len(want))
		}
		for i := range want {
			report(t, fmt.Sprintf("held observation %d of %s", i, id), diffObservation(got[i], want[i]))
		}
	}
	check("tr-1", take("tr-1"), []training.Observation{obs[0], obs[2], obs[3], obs[4]})
	check("tr-1", take("tr-1"), nil) // taken means deleted
	check("unknown", take("tr-unknown"), nil)

	// A take that rolls back leaves them held.
	err := s.Write(t.Context(), func(tx store.Tx) error {
		got, err := tx.TakeHeld(t.Context(), "tr-2")
		if err != nil || len(got) != 1 {
			t.Errorf("TakeHeld(tr-2) = %d, %v; want 1", len(got), err)
		}
		return errSentinel
	})
	wantErr(t, "Write", err, errSentinel)
	check("tr-2", take("tr-2"), obs[1:2])
}
