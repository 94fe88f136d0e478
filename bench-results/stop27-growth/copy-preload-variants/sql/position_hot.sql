DROP INDEX position_vault_active_idx;
CREATE INDEX position_vault_idx ON position (term_id, curve_id);
ALTER TABLE position SET (fillfactor = 85);
-- statement
VACUUM FULL position;
-- statement
VACUUM FULL term;
-- statement
VACUUM FULL vault;
-- statement
ANALYZE position, term, vault;
