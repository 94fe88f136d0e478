VACUUM FULL term;
-- statement
VACUUM FULL vault;
-- statement
ANALYZE term, vault;
