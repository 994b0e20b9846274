package postgres

import (
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// Held-back writes of one kind go to the server as one statement over
// arrays (unnest) rather than one statement per row: in a batch of
// deliveries most of the server's work per statement is the statement
// itself (bind, executor start, command tag), not the row.
const (
	insertHistoryRows = `INSERT INTO history (model_id, from_status, to_status, remote_status, decision, source, source_ref, note, at)
SELECT model_id, from_status, to_status, remote_status, decision, source, source_ref, note, at
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::timestamptz[])
	WITH ORDINALITY AS v(model_id, from_status, to_status, remote_status, decision, source, source_ref, note, at, n)
ORDER BY n`
	insertDeliveryRows = `INSERT INTO deliveries (id, webhook_id, received_at, verified, reason, outcome, training_id, model_id, remote_status,
	timestamp, signature, replay_of, payload)
OVERRIDING SYSTEM VALUE
SELECT * FROM unnest($13::bigint[], $1::text[], $2::timestamptz[], $3::boolean[], $4::text[], $5::text[], $6::text[], $7::text[],
	$8::text[], $9::text[], $10::text[], $11::bigint[], $12::bytea[])`
	// Checked, as claimWebhookIDChecked: every id must be claimed.
	claimWebhookIDRows = `WITH c AS (INSERT INTO webhook_ids (webhook_id, at)
	SELECT * FROM unnest($1::text[], $2::timestamptz[]) ON CONFLICT (webhook_id) DO NOTHING RETURNING 1)
SELECT 1 / (count(*) = $3)::int FROM c`
)

// rowKind says which multi-row statement a held-back statement can join.
type rowKind uint8

const (
	rowAlone rowKind = iota
	rowHistory
	rowDelivery
	rowClaim
)

// merge returns stmts with the rows of each kind that can be merged sent
// as one statement, at the place of the first of them. The others keep
// their order. Only statements on different tables are reordered this
// way, and none of them reads what another writes.
func merge(stmts []statement) []statement {
	var count [rowClaim + 1]int
	for _, st := range stmts {
		count[st.kind]++
	}
	if count[rowHistory] < 2 && count[rowDelivery] < 2 && count[rowClaim] < 2 {
		return stmts
	}
	out := make([]statement, 0, len(stmts))
	var rows [rowClaim + 1][]statement
	var at [rowClaim + 1]int
	for _, st := range stmts {
		if st.kind == rowAlone || count[st.kind] < 2 {
			out = append(out, st)
			continue
		}
		if rows[st.kind] == nil {
			at[st.kind] = len(out)
			out = append(out, statement{}) // filled in below
		}
		rows[st.kind] = append(rows[st.kind], st)
	}
	for k := rowHistory; k <= rowClaim; k++ {
		if rows[k] != nil {
			out[at[k]] = mergeRows(k, rows[k])
		}
	}
	return out
}

// mergeRows makes one statement of rows, all of kind k, whose args are
// those of the single-row statement.
func mergeRows(k rowKind, rows []statement) statement {
	width := len(rows[0].args)
	cols := make([][]any, width)
	for _, r := range rows {
		for i, a := range r.args {
			cols[i] = append(cols[i], a)
		}
	}
	args := make([]any, width)
	for i, c := range cols {
		args[i] = column(c)
	}
	n := len(rows)
	switch k {
	case rowHistory:
		return statement{what: fmt.Sprintf("add %d history entries", n), sql: insertHistoryRows, args: args}
	case rowDelivery:
		return statement{what: fmt.Sprintf("add %d deliveries", n), sql: insertDeliveryRows, args: args}
	default:
		ids := args[0].([]string)
		return statement{what: fmt.Sprintf("claim %d webhook ids", n), sql: claimWebhookIDRows, args: append(args, n),
			conflict: fmt.Sprintf("one of webhook ids %q was claimed by another transaction meanwhile", ids)}
	}
}

// column turns one argument of each row into an array argument. The
// values are what the single-row statements take: string, bool, int64,
// []byte, and time.Time or nil (NULL).
func column(vs []any) any {
	switch vs[0].(type) {
	case string:
		out := make([]string, len(vs))
		for i, v := range vs {
			out[i] = v.(string)
		}
		return out
	case bool:
		out := make([]bool, len(vs))
		for i, v := range vs {
			out[i] = v.(bool)
		}
		return out
	case int64:
		out := make([]int64, len(vs))
		for i, v := range vs {
			out[i] = v.(int64)
		}
		return out
	case []byte:
		out := make([][]byte, len(vs))
		for i, v := range vs {
			out[i], _ = v.([]byte)
		}
		return out
	}
	// Times, NULL for none (a payload column is []byte even when nil, so
	// only times are nil here).
	out := make([]pgtype.Timestamptz, len(vs))
	for i, v := range vs {
		if t, ok := v.(time.Time); ok {
			out[i] = pgtype.Timestamptz{Time: t, Valid: true}
		}
	}
	return out
}
