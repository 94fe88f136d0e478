REINDEX TABLE position;
-- statement
REINDEX TABLE term;
-- statement
REINDEX TABLE vault;
-- statement
ANALYZE position, term, vault;
