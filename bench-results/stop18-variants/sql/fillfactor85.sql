-- Room on every page of term and vault for HOT updates (no index entry for a new version).
ALTER TABLE term SET (fillfactor = 85);
ALTER TABLE vault SET (fillfactor = 85);
-- statement
VACUUM FULL term
-- statement
VACUUM FULL vault
-- statement
ANALYZE term, vault
