package postgres

import (
	"slices"
	"testing"
	"time"
)

// Held-back rows of one kind go as one statement, at the place of the
// first; the others keep their order.
func TestMergeHeldRows(t *testing.T) {
	at := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	claim := func(id string) statement {
		return statement{sql: claimWebhookIDChecked, args: []any{id, at}, kind: rowClaim, conflict: "x"}
	}
	delivery := func(id int64) statement {
		return statement{sql: insertDeliveryWithID, kind: rowDelivery,
			args: []any{"w", nil, true, "", "applied", "t", "m", "", "", "", int64(0), []byte(nil), id}}
	}
	history := func(m string) statement {
		return statement{sql: insertHistory, kind: rowHistory, args: []any{m, "a", "b", "", "move", "webhook", "", "", at}}
	}
	update := func(m string) statement { return statement{sql: updateModelChecked, args: []any{m}} }
	in := []statement{claim("w1"), delivery(7), update("m1"), history("m1"), claim("w2"), delivery(8), update("m2"), history("m2"), delivery(9)}
	out := merge(in)
	var sqls []string
	for _, st := range out {
		sqls = append(sqls, st.sql)
	}
	want := []string{claimWebhookIDRows, insertDeliveryRows, updateModelChecked, insertHistoryRows, updateModelChecked}
	if !slices.Equal(sqls, want) {
		t.Fatalf("merged into\n%q\nwant\n%q", sqls, want)
	}
	if ids := out[0].args[0].([]string); !slices.Equal(ids, []string{"w1", "w2"}) || out[0].args[2] != 2 || out[0].conflict == "" {
		t.Errorf("claims: %+v", out[0])
	}
	if ids := out[1].args[12].([]int64); !slices.Equal(ids, []int64{7, 8, 9}) {
		t.Errorf("delivery ids %v, want [7 8 9] in order", ids)
	}
	if ms := out[3].args[0].([]string); !slices.Equal(ms, []string{"m1", "m2"}) {
		t.Errorf("history rows for %v, want [m1 m2] in order", ms)
	}
	if out[2].args[0] != "m1" || out[4].args[0] != "m2" {
		t.Errorf("updates reordered: %v, %v", out[2].args, out[4].args)
	}
	// One row of a kind stays the single-row statement.
	if got := merge([]statement{claim("w1"), delivery(1)}); got[0].sql != claimWebhookIDChecked || got[1].sql != insertDeliveryWithID {
		t.Errorf("single rows rewritten: %q, %q", got[0].sql, got[1].sql)
	}
}
