-- Level 3 refresh, called by analytics-worker once per batch of term ids read from the
-- `term_updates` stream. It recomputes, set-based, exactly what the snapshot views
-- (snapshot.sql) define, but only for the triples whose term_id or counter_term_id is in the batch
-- and for the (predicate_id, object_id) / (subject_id, predicate_id) pairs of those
-- triples. Every lookup goes through an index (triple PK, triple_counter_term_idx, the
-- two pair indexes on triple, the vault and level 3 primary keys), so a batch costs in
-- proportion to its triples and the triples of their pairs, never to the table sizes.
--
-- Concurrency. Several workers may refresh at once while engines keep writing levels 1-2.
--  * Before it writes or reads anything it will aggregate, a refresh takes transaction
--    advisory locks on every triple and pair it will rewrite, all of them, in one global
--    order (class, key). Writers of the same row therefore serialize, and since nobody
--    waits for a lock while holding a later one, workers never deadlock. The level 3 rows
--    a refresh writes all hang off a locked triple or pair, so row locks never wait either.
--  * Locks use the two-int4 form pg_advisory_xact_lock(class, key). PostgreSQL keeps that
--    key space apart from the single-bigint one, so they never meet the engine's term
--    locks (lock_terms, batch.sql) or its migration lock: the worker never blocks ingestion.
--  * The recompute runs in READ COMMITTED and each statement after the locks takes a
--    fresh snapshot, so it sees every commit of whoever held the locks before, and every
--    level 1-2 commit made before the lock was granted. The engine publishes a term only
--    after its commit, so the refresh triggered by the last change to a triple reads that
--    change, and a stale refresh can never commit after a fresher one (it would have had
--    to hold the lock across the fresher one's read). Hence no lost updates.
--  * A pair row aggregates the triple_term rows of all triples of the pair, including
--    triples outside the batch. Whoever rewrites a triple_term row also holds the locks
--    of both pairs of that triple, so under a pair's lock every triple_term row of the
--    pair is committed and final until the lock is released.

-- Lock classes (first key of the two-int4 advisory lock).
CREATE OR REPLACE FUNCTION analytics_lock_class(kind TEXT) RETURNS INT
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE kind WHEN 'triple' THEN 730001
                     WHEN 'predicate_object' THEN 730002
                     WHEN 'subject_predicate' THEN 730003 END
$$;

-- Second key: 32 bits of md5 over the key's parts. A collision only makes two refreshes
-- wait for each other.
CREATE OR REPLACE FUNCTION analytics_lock_key(a TEXT, b TEXT) RETURNS INT
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT ('x' || substr(md5(a || '/' || b), 1, 8))::bit(32)::int
$$;

-- Take the locks of a refresh, sorted, one at a time (a single statement would not
-- promise the order in which it calls pg_advisory_xact_lock).
CREATE OR REPLACE FUNCTION lock_analytics(triple_ids TEXT[], po_pairs analytics_pair[], sp_pairs analytics_pair[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k RECORD;
BEGIN
    FOR k IN
        SELECT DISTINCT class, key FROM (
            SELECT analytics_lock_class('triple') AS class, analytics_lock_key(id, '') AS key
              FROM unnest(triple_ids) AS id
            UNION ALL
            SELECT analytics_lock_class('predicate_object'), analytics_lock_key(p.a, p.b)
              FROM unnest(po_pairs) AS p
            UNION ALL
            SELECT analytics_lock_class('subject_predicate'), analytics_lock_key(p.a, p.b)
              FROM unnest(sp_pairs) AS p
        ) keys
        ORDER BY class, key
    LOOP
        PERFORM pg_advisory_xact_lock(k.class, k.key);
    END LOOP;
END
$$;

-- The refresh functions below get the planner's default estimate for their array
-- arguments (a handful of rows), which keeps them on index nested loops: cost in
-- proportion to the batch. Their deletes use NOT IN over the fresh rows, which the
-- planner runs as a hashed subplan, so they stay linear too (an anti join on a CTE
-- estimated that small would be a nested loop, quadratic in the batch).

-- triple_vault for the given triples: one row per curve on which the pro or the counter
-- vault exists, pro + counter (a missing vault counts 0). Rows of curves that no longer
-- qualify, and of triples that no longer exist, are deleted.
CREATE OR REPLACE FUNCTION refresh_triple_vault(triple_ids TEXT[]) RETURNS void LANGUAGE sql AS $$
    WITH t AS (
        SELECT term_id, counter_term_id FROM triple WHERE term_id = ANY(triple_ids)
    ), fresh AS (
        SELECT t.term_id, t.counter_term_id, c.curve_id,
               (coalesce(pv.total_shares, 0) + coalesce(cv.total_shares, 0))::numeric AS total_shares,
               (coalesce(pv.total_assets, 0) + coalesce(cv.total_assets, 0))::numeric AS total_assets,
               (coalesce(pv.position_count, 0) + coalesce(cv.position_count, 0))::bigint AS position_count,
               (coalesce(pv.market_cap, 0) + coalesce(cv.market_cap, 0))::numeric AS market_cap
          FROM t
          JOIN LATERAL (SELECT DISTINCT v.curve_id FROM vault v
                         WHERE v.term_id IN (t.term_id, t.counter_term_id)) c ON true
          LEFT JOIN vault pv ON pv.term_id = t.term_id AND pv.curve_id = c.curve_id
          LEFT JOIN vault cv ON cv.term_id = t.counter_term_id AND cv.curve_id = c.curve_id
    ), gone AS (
        DELETE FROM triple_vault tv
         WHERE tv.term_id = ANY(triple_ids)
           AND (tv.term_id, tv.curve_id) NOT IN (SELECT term_id, curve_id FROM fresh)
    )
    INSERT INTO triple_vault AS tv (term_id, counter_term_id, curve_id, total_shares, total_assets,
                                    position_count, market_cap)
    SELECT * FROM fresh
    ON CONFLICT (term_id, curve_id) DO UPDATE SET
           counter_term_id = EXCLUDED.counter_term_id,
           total_shares = EXCLUDED.total_shares,
           total_assets = EXCLUDED.total_assets,
           position_count = EXCLUDED.position_count,
           market_cap = EXCLUDED.market_cap
     WHERE (tv.counter_term_id, tv.total_shares, tv.total_assets, tv.position_count, tv.market_cap)
           IS DISTINCT FROM
           (EXCLUDED.counter_term_id, EXCLUDED.total_shares, EXCLUDED.total_assets,
            EXCLUDED.position_count, EXCLUDED.market_cap)
$$;

-- triple_term for the given triples, summed from their (just refreshed) triple_vault rows;
-- zeros while a triple has no vault.
CREATE OR REPLACE FUNCTION refresh_triple_term(triple_ids TEXT[]) RETURNS void LANGUAGE sql AS $$
    WITH t AS (
        SELECT term_id, counter_term_id FROM triple WHERE term_id = ANY(triple_ids)
    ), fresh AS (
        SELECT t.term_id, t.counter_term_id,
               coalesce(sum(tv.total_assets), 0)::numeric AS total_assets,
               coalesce(sum(tv.market_cap), 0)::numeric AS total_market_cap,
               coalesce(sum(tv.position_count), 0)::bigint AS total_position_count
          FROM t LEFT JOIN triple_vault tv ON tv.term_id = t.term_id
         GROUP BY t.term_id, t.counter_term_id
    ), gone AS (
        DELETE FROM triple_term tt
         WHERE tt.term_id = ANY(triple_ids)
           AND tt.term_id NOT IN (SELECT term_id FROM t)
    )
    INSERT INTO triple_term AS tt (term_id, counter_term_id, total_assets, total_market_cap,
                                   total_position_count)
    SELECT * FROM fresh
    ON CONFLICT (term_id) DO UPDATE SET
           counter_term_id = EXCLUDED.counter_term_id,
           total_assets = EXCLUDED.total_assets,
           total_market_cap = EXCLUDED.total_market_cap,
           total_position_count = EXCLUDED.total_position_count
     WHERE (tt.counter_term_id, tt.total_assets, tt.total_market_cap, tt.total_position_count)
           IS DISTINCT FROM
           (EXCLUDED.counter_term_id, EXCLUDED.total_assets, EXCLUDED.total_market_cap,
            EXCLUDED.total_position_count)
$$;

-- predicate_object for the given (predicate_id, object_id) pairs: the pair's triples
-- (triple_predicate_object_idx) and their triple_term rows; a pair left without triples
-- is deleted.
CREATE OR REPLACE FUNCTION refresh_predicate_object(pairs analytics_pair[]) RETURNS void LANGUAGE sql AS $$
    WITH p AS (
        SELECT DISTINCT a AS predicate_id, b AS object_id FROM unnest(pairs)
    ), fresh AS (
        SELECT p.predicate_id, p.object_id,
               count(*)::bigint AS triple_count,
               coalesce(sum(tt.total_position_count), 0)::bigint AS total_position_count,
               coalesce(sum(tt.total_market_cap), 0)::numeric AS total_market_cap
          FROM p
          JOIN triple t ON t.predicate_id = p.predicate_id AND t.object_id = p.object_id
          LEFT JOIN triple_term tt ON tt.term_id = t.term_id
         GROUP BY p.predicate_id, p.object_id
    ), gone AS (
        DELETE FROM predicate_object po
         USING p
         WHERE po.predicate_id = p.predicate_id AND po.object_id = p.object_id
           AND (po.predicate_id, po.object_id) NOT IN (SELECT predicate_id, object_id FROM fresh)
    )
    INSERT INTO predicate_object AS po (predicate_id, object_id, triple_count, total_position_count,
                                        total_market_cap)
    SELECT * FROM fresh
    ON CONFLICT (predicate_id, object_id) DO UPDATE SET
           triple_count = EXCLUDED.triple_count,
           total_position_count = EXCLUDED.total_position_count,
           total_market_cap = EXCLUDED.total_market_cap
     WHERE (po.triple_count, po.total_position_count, po.total_market_cap)
           IS DISTINCT FROM
           (EXCLUDED.triple_count, EXCLUDED.total_position_count, EXCLUDED.total_market_cap)
$$;

-- subject_predicate, the same over (subject_id, predicate_id) (triple_subject_predicate_idx).
CREATE OR REPLACE FUNCTION refresh_subject_predicate(pairs analytics_pair[]) RETURNS void LANGUAGE sql AS $$
    WITH p AS (
        SELECT DISTINCT a AS subject_id, b AS predicate_id FROM unnest(pairs)
    ), fresh AS (
        SELECT p.subject_id, p.predicate_id,
               count(*)::bigint AS triple_count,
               coalesce(sum(tt.total_position_count), 0)::bigint AS total_position_count,
               coalesce(sum(tt.total_market_cap), 0)::numeric AS total_market_cap
          FROM p
          JOIN triple t ON t.subject_id = p.subject_id AND t.predicate_id = p.predicate_id
          LEFT JOIN triple_term tt ON tt.term_id = t.term_id
         GROUP BY p.subject_id, p.predicate_id
    ), gone AS (
        DELETE FROM subject_predicate sp
         USING p
         WHERE sp.subject_id = p.subject_id AND sp.predicate_id = p.predicate_id
           AND (sp.subject_id, sp.predicate_id) NOT IN (SELECT subject_id, predicate_id FROM fresh)
    )
    INSERT INTO subject_predicate AS sp (subject_id, predicate_id, triple_count, total_position_count,
                                         total_market_cap)
    SELECT * FROM fresh
    ON CONFLICT (subject_id, predicate_id) DO UPDATE SET
           triple_count = EXCLUDED.triple_count,
           total_position_count = EXCLUDED.total_position_count,
           total_market_cap = EXCLUDED.total_market_cap
     WHERE (sp.triple_count, sp.total_position_count, sp.total_market_cap)
           IS DISTINCT FROM
           (EXCLUDED.triple_count, EXCLUDED.total_position_count, EXCLUDED.total_market_cap)
$$;

-- The worker's entry point: refresh level 3 for a batch of term ids (any mix of atom,
-- triple, counter-triple and vault terms; duplicates and unknown ids are fine). Returns
-- the number of triples refreshed. Must run in its own READ COMMITTED transaction.
CREATE OR REPLACE FUNCTION refresh_analytics(term_ids TEXT[]) RETURNS INT LANGUAGE plpgsql AS $$
DECLARE
    triple_ids TEXT[];
    po_pairs analytics_pair[];
    sp_pairs analytics_pair[];
BEGIN
    -- Under REPEATABLE READ or SERIALIZABLE the whole function would read one snapshot
    -- taken before the locks were granted, and could overwrite a fresher refresh.
    IF current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE EXCEPTION 'refresh_analytics must run in a READ COMMITTED transaction, not %',
            current_setting('transaction_isolation');
    END IF;

    -- The affected triples, fixed before locking: the refresh writes only rows of this
    -- set and its pairs, all locked below. A triple created after this point was
    -- published by its engine and gets a refresh of its own. Ids that still have a
    -- triple_term row but no triple are included so their rows get deleted.
    WITH ids AS (
        SELECT DISTINCT id FROM unnest(term_ids) AS id
    ), hit AS (
        SELECT t.term_id, t.subject_id, t.predicate_id, t.object_id
          FROM triple t WHERE t.term_id IN (SELECT id FROM ids)
        UNION
        SELECT t.term_id, t.subject_id, t.predicate_id, t.object_id
          FROM triple t WHERE t.counter_term_id IN (SELECT id FROM ids)
    )
    SELECT array_agg(DISTINCT h.term_id),
           array_agg(DISTINCT ROW(h.predicate_id, h.object_id)::analytics_pair),
           array_agg(DISTINCT ROW(h.subject_id, h.predicate_id)::analytics_pair)
      INTO triple_ids, po_pairs, sp_pairs
      FROM hit h;

    SELECT coalesce(triple_ids, '{}') || coalesce(array_agg(tt.term_id), '{}')
      INTO triple_ids
      FROM triple_term tt
     WHERE tt.term_id = ANY(term_ids) AND tt.term_id <> ALL(coalesce(triple_ids, '{}'));

    IF cardinality(triple_ids) = 0 THEN
        RETURN 0;
    END IF;

    PERFORM lock_analytics(triple_ids, po_pairs, sp_pairs);
    -- Each statement from here on reads a snapshot taken after every lock was granted.
    PERFORM refresh_triple_vault(triple_ids);
    PERFORM refresh_triple_term(triple_ids);
    PERFORM refresh_predicate_object(po_pairs);
    PERFORM refresh_subject_predicate(sp_pairs);
    RETURN cardinality(triple_ids);
END
$$;
