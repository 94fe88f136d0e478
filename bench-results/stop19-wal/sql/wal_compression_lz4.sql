-- Full-page images compressed with lz4 (PostgreSQL 15+) instead of the tuned cluster's pglz (`on`).
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET wal_compression = lz4', current_database()); END $$;
