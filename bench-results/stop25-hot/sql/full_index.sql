-- The readers' index of a vault's positions without the `shares > 0` predicate (HOT-eligible
-- updates of `shares`), pages filled as now.
DROP INDEX position_vault_active_idx;
CREATE INDEX position_vault_active_idx ON position (term_id, curve_id);
