-- Control for fillfactor85: the same rewrite of term and vault at the default fillfactor.
VACUUM FULL term
-- statement
VACUUM FULL vault
-- statement
ANALYZE term, vault
