VACUUM FULL position;
-- statement
VACUUM FULL term;
-- statement
VACUUM FULL vault;
-- statement
ANALYZE position, term, vault;
