-- 0005: SQLite drops notifications_model_url at this step (its claim checks
-- per-model order through notifications_model_seq instead). PostgreSQL keeps
-- the index: its planner picks it for the claim's ordering check, and the
-- claim is measured with it. The step exists so that both databases' schema
-- versions count alike.
SELECT 1;
