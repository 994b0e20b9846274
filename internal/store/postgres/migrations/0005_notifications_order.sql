-- 0005: SQLite drops notifications_model_url at this step (its claim checks
-- per-model order through notifications_model_seq instead). PostgreSQL keeps
-- the index for the claim's ordering check, where its planner chooses by
-- statistics; the step keeps both databases' schema versions alike.
SELECT 1;
