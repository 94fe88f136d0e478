-- Full-page images written as they are: no compression CPU on the backends that write them.
DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET wal_compression = off', current_database()); END $$;
