-- 0003: what ends a model Replicate does not know, and what lets a person
-- clean up and try again.
--
-- not_found_since and not_found_checks count the checks in a row that
-- Replicate answered 404 for the model's training: after a grace period the
-- model is Failed rather than polled forever. archived_at hides a finished
-- model from lists (its history is kept); retry_of links a retry to the
-- model it retried; web_url is the training's page on replicate.com.
ALTER TABLE models ADD COLUMN not_found_since  timestamptz;
ALTER TABLE models ADD COLUMN not_found_checks bigint NOT NULL DEFAULT 0;
ALTER TABLE models ADD COLUMN archived_at      timestamptz;
ALTER TABLE models ADD COLUMN retry_of         text COLLATE "C" NOT NULL DEFAULT '';
ALTER TABLE models ADD COLUMN web_url          text NOT NULL DEFAULT '';
