-- A batch's term ids, stored out of line without pglz compression: the outbox row lives only
-- until the publisher has sent it, so its size does not matter, but compressing it on insert
-- and decompressing it on read costs PostgreSQL CPU every batch.
ALTER TABLE term_update_outbox ALTER COLUMN term_ids SET STORAGE EXTERNAL;
