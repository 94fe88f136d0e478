-- The readers' index of a vault's positions without the `shares > 0` predicate, and room on
-- each position page: a change of `shares` then touches no indexed column and can be a HOT
-- update (no new entry in any of the table's indexes).
DROP INDEX position_vault_active_idx;
CREATE INDEX position_vault_active_idx ON position (term_id, curve_id);
ALTER TABLE position SET (fillfactor = 90);
