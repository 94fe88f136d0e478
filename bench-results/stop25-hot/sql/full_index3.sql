-- The readers' index of a vault's positions without the `shares > 0` predicate (HOT-eligible
-- updates of `shares`), keyed to the row (term, curve, account), so that a probe by the
-- whole key is a one-row probe whichever index the planner picks.
DROP INDEX position_vault_active_idx;
CREATE INDEX position_vault_active_idx ON position (term_id, curve_id, account_id);
