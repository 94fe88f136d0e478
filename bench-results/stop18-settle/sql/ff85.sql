ALTER TABLE term SET (fillfactor = 85)
-- split
ALTER TABLE vault SET (fillfactor = 85)
-- split
VACUUM FULL term
-- split
VACUUM FULL vault
-- split
ANALYZE term
-- split
ANALYZE vault
-- split
CHECKPOINT
