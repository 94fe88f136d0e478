-- What the readers' partial index (a vault's live positions) costs the position merges.
DROP INDEX position_vault_active_idx;
