VACUUM FULL term
-- split
VACUUM FULL vault
-- split
ANALYZE term
-- split
ANALYZE vault
-- split
CHECKPOINT
