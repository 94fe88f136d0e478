DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET wal_compression = lz4', current_database()); END $$;
