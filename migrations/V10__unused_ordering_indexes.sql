-- Indexes nobody reads, dropped.
--
-- The seed proposed indexes on the (block_number, log_index) ordering columns to speed up
-- the "is this event later?" check of its per-row triggers. The merges here find every row
-- by its primary key and compare the ordering columns of that one row, so these indexes
-- are never scanned: not by the merges, the cascade, the analytics, the readers nor the
-- reference views. Each was still written at every position or vault upsert (an update
-- that changes an indexed column is never HOT, so it inserts into every index of the
-- table), about a tenth of the position merge.
DROP INDEX IF EXISTS position_last_deposit_idx;
DROP INDEX IF EXISTS position_last_redeem_idx;
DROP INDEX IF EXISTS vault_last_price_idx;
