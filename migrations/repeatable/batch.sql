-- What the engine calls for each batch besides the cascade: its term locks, its staging
-- tables and the move of staged events into the event log. A batch is a handful of round
-- trips: lock_terms, a savepoint, one COPY per event table straight into the log,
-- cascade_terms, the outbox insert, COMMIT; a batch that repeats a logged event goes back to
-- the savepoint and COPYs into the staging tables, then calls merge_staged_events.

-- Advisory-lock key of a term: one of 512 stripes picked by the first bytes of its id (ids
-- are keccak hashes, so evenly spread). Striping bounds the locks a batch holds: PostgreSQL's
-- shared lock table has room for about 64 per connection, and a 100,000-event batch touches
-- tens of thousands of terms. Two batches on different terms of one stripe just wait for
-- each other.
CREATE OR REPLACE FUNCTION term_lock_key(term_id TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT 7342000000 + (('x' || substr(term_id, 3, 8))::bit(32)::bigint & 511)
$$;

-- Every row a batch writes in levels 1-2 hangs off a term (atom, triple, its counter term,
-- vault, position, term). Taking the batch's term locks in one global order before merging
-- lets several engines share a consumer group without deadlocks or lost updates.
CREATE OR REPLACE FUNCTION lock_terms(term_ids TEXT[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k BIGINT;
BEGIN
    FOR k IN SELECT DISTINCT term_lock_key(id) FROM unnest(term_ids) AS id ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
END
$$;

-- Session-local staging tables that the engine fills with binary COPY: temporary, so
-- concurrent engines never see each other's rows. They keep their rows across commits
-- (ON COMMIT DELETE ROWS would truncate all of them, heap, TOAST table and index, at every
-- commit: about 2 ms) and merge_staged_events empties the ones it used inside the batch's
-- transaction, so a rolled-back batch leaves nothing behind either.
CREATE OR REPLACE FUNCTION create_staging_tables() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['atom_created_events', 'triple_created_events', 'deposited_events',
                             'redeemed_events', 'share_price_changed_events', 'generic_events'] LOOP
        EXECUTE format('CREATE TEMP TABLE IF NOT EXISTS %I (LIKE public.%I) ON COMMIT PRESERVE ROWS',
                       'stage_' || t, t);
    END LOOP;
END
$$;

-- Move staged events into the log. ON CONFLICT DO NOTHING keeps redelivered events out of
-- the transition tables, so the statement-level triggers (merge.sql) see only new events.
-- Then the staging table is emptied: by DELETE after a small batch, by TRUNCATE past 4 MB
-- (about 10,000 events), which gives the space back at once (temporary tables are never
-- vacuumed).
CREATE OR REPLACE FUNCTION merge_staged_events(tables TEXT[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
    stage TEXT;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        stage := 'stage_' || t;
        EXECUTE format('INSERT INTO public.%I SELECT * FROM pg_temp.%I ON CONFLICT DO NOTHING', t, stage);
        IF pg_relation_size(format('pg_temp.%I', stage)::regclass) > 4194304 THEN
            EXECUTE format('TRUNCATE pg_temp.%I', stage);
        ELSE
            EXECUTE format('DELETE FROM pg_temp.%I', stage);
        END IF;
    END LOOP;
END
$$;
