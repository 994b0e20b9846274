-- 0005: the claim's ordering check (an earlier pending row of the same
-- model and URL) looks through notifications_model_seq, which holds a
-- model's few rows anyway, instead of an index of its own: one b-tree
-- fewer to update in the transaction of every change that notifies, and
-- in every outcome.
DROP INDEX notifications_model_url;
