-- Level 3 refresh, called by analytics-worker once per batch of term ids read from the
-- `term_updates` stream. It recomputes, set-based, exactly what the snapshot views
-- (snapshot.sql) define for the triples whose term_id or counter_term_id is in the batch,
-- and moves the (predicate_id, object_id) / (subject_id, predicate_id) pair rows of those
-- triples by what their rows changed (see refresh_triples). Every lookup goes through an
-- index (triple PK, triple_counter_term_idx, the vault and level 3 primary keys), so a
-- batch costs in proportion to its triples, never to the table sizes nor to how many
-- triples their pairs hold, with or without planner statistics (see below).
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
--  * A pair row sums the triple_term rows of all triples of the pair, including triples
--    outside the batch. Whoever rewrites a triple_term row also holds the locks of both
--    pairs of that triple, so the pair rows always hold the committed triple_term rows'
--    sums, and the pair locks keep two refreshes from updating pair rows in opposite
--    orders (which would deadlock on the row locks).
--  * rebuild_from_reference (readers.sql) rewrites level 3 tables under EXCLUSIVE locks; a
--    refresh first takes ROW EXCLUSIVE on all four in the same order, so it runs entirely
--    before or entirely after a rebuild and never adds a delta to a rebuilt base.

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

-- Plans that stay index-driven without statistics. A new database, or one a backfill has
-- just grown, has no column statistics until autovacuum's first ANALYZE (a minute or more
-- later). Without them the planner takes any value of a non-unique key (vault.term_id,
-- triple.counter_term_id, triple_vault.term_id) to match 0.5 % of the table, so a join of
-- a batch's ids to such a key became a hash join over a full scan of vault or triple on
-- every refresh: cost in proportion to the tables, not the batch (stop 23 measured 1.2 s
-- of a 2.2 s replay in two vault scans per chunk, and the live worker's scans at 10,000
-- events/s read 2.7 million vault rows in 10 s). Lookups on such keys are therefore
-- LATERAL subqueries that cannot be flattened into a join (an aggregate, or OFFSET 0), one
-- index probe per row; lookups on unique keys (`= ANY` on a primary key) are estimated
-- right either way. Deletes use NOT IN over the fresh rows, which the planner runs as a
-- hashed subplan (an anti join on a CTE estimated small would be a nested loop, quadratic
-- in the batch).

-- Level 3 rows of the given triples, in one statement (one snapshot, taken after the
-- caller's locks were granted):
--  * triple_vault: one row per curve on which the pro or the counter vault exists, pro +
--    counter (a missing vault counts 0); rows of curves that no longer qualify, and of
--    triples that no longer exist, are deleted.
--  * triple_term: the sums of those rows (zeros while a triple has no vault). Both come from
--    one probe of the pro and counter vaults per triple: GROUP BY ROLLUP gives the per-curve
--    rows and their total, and its total row exists even when no vault does.
--  * both pair rows of each triple, moved by exactly what its triple_term row changed.
--
-- Pair rows by delta. A predicate_object or subject_predicate row is the sum of its pair's
-- triple_term rows (how many, their position counts, their market caps). Recomputing it
-- read every triple of the pair, so a refresh cost as much as its most popular pair, and on
-- a real graph a few pairs (("is a", "Person")) hold most triples. Instead the statement
-- that writes a triple_term row adds (new - old) to both of its triple's pair rows, a new
-- row counting one triple. That stays exact because only this statement writes triple_term
-- and the pair rows, under the triple's and both pairs' locks (lock_analytics), so the old
-- row it subtracts is the one the pair rows hold (read from the statement's snapshot,
-- before its own writes); a triple's pairs never change (subject, predicate and object are
-- fixed at creation); and V3 made the pair rows of an existing database such sums. A
-- triple_term row whose triple is gone (a reorg retracted it) is deleted without a delta:
-- its pairs are not known any more.
CREATE OR REPLACE FUNCTION refresh_triples(triple_ids TEXT[]) RETURNS void LANGUAGE sql AS $$
    WITH t AS (
        SELECT term_id, counter_term_id, subject_id, predicate_id, object_id
          FROM triple WHERE term_id = ANY(triple_ids)
    ), sums AS (
        SELECT t.term_id, t.counter_term_id, s.curve_id, s.per_curve, s.total_shares,
               s.total_assets, s.position_count, s.market_cap
          FROM t
         CROSS JOIN LATERAL (
               SELECT v.curve_id, grouping(v.curve_id) = 0 AS per_curve,
                      sum(v.total_shares)::numeric AS total_shares,
                      coalesce(sum(v.total_assets), 0)::numeric AS total_assets,
                      coalesce(sum(v.position_count), 0)::bigint AS position_count,
                      coalesce(sum(v.market_cap), 0)::numeric AS market_cap
                 FROM vault v
                WHERE v.term_id IN (t.term_id, t.counter_term_id)
                GROUP BY ROLLUP (v.curve_id)) s
    ), vaults AS (
        SELECT term_id, counter_term_id, curve_id, total_shares, total_assets, position_count,
               market_cap
          FROM sums WHERE per_curve
    ), fresh AS (
        SELECT term_id, counter_term_id, total_assets, market_cap AS total_market_cap,
               position_count AS total_position_count
          FROM sums WHERE NOT per_curve
    ), gone_vaults AS (
        DELETE FROM triple_vault tv
         WHERE tv.term_id = ANY(triple_ids)
           AND (tv.term_id, tv.curve_id) NOT IN (SELECT term_id, curve_id FROM vaults)
    ), written_vaults AS (
        INSERT INTO triple_vault AS tv (term_id, counter_term_id, curve_id, total_shares,
                                        total_assets, position_count, market_cap)
        SELECT * FROM vaults
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
    ), gone AS (
        DELETE FROM triple_term tt
         WHERE tt.term_id = ANY(triple_ids)
           AND tt.term_id NOT IN (SELECT term_id FROM t)
    ), written AS (
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
    ), delta AS (
        SELECT t.subject_id, t.predicate_id, t.object_id,
               (o.term_id IS NULL)::int AS triple_count,
               f.total_position_count - coalesce(o.total_position_count, 0) AS total_position_count,
               f.total_market_cap - coalesce(o.total_market_cap, 0) AS total_market_cap
          FROM fresh f
          JOIN t ON t.term_id = f.term_id
          -- The row as it was before `written`: every part of a statement reads the
          -- statement's snapshot, none sees another's changes. A join on the primary key, not
          -- a CTE over the batch's ids, which the planner once joined back by rescanning all
          -- of the ids for each row.
          LEFT JOIN triple_term o ON o.term_id = f.term_id
    ), po AS (
        INSERT INTO predicate_object AS po (predicate_id, object_id, triple_count,
                                            total_position_count, total_market_cap)
        SELECT predicate_id, object_id, sum(triple_count)::bigint, sum(total_position_count)::bigint,
               sum(total_market_cap)::numeric
          FROM delta GROUP BY predicate_id, object_id
        HAVING (sum(triple_count), sum(total_position_count), sum(total_market_cap)) <> (0, 0, 0)
        ON CONFLICT (predicate_id, object_id) DO UPDATE SET
               triple_count = po.triple_count + EXCLUDED.triple_count,
               total_position_count = po.total_position_count + EXCLUDED.total_position_count,
               total_market_cap = po.total_market_cap + EXCLUDED.total_market_cap
    )
    INSERT INTO subject_predicate AS sp (subject_id, predicate_id, triple_count,
                                         total_position_count, total_market_cap)
    SELECT subject_id, predicate_id, sum(triple_count)::bigint, sum(total_position_count)::bigint,
           sum(total_market_cap)::numeric
      FROM delta GROUP BY subject_id, predicate_id
    HAVING (sum(triple_count), sum(total_position_count), sum(total_market_cap)) <> (0, 0, 0)
    ON CONFLICT (subject_id, predicate_id) DO UPDATE SET
           triple_count = sp.triple_count + EXCLUDED.triple_count,
           total_position_count = sp.total_position_count + EXCLUDED.total_position_count,
           total_market_cap = sp.total_market_cap + EXCLUDED.total_market_cap
$$;

-- Replaced by refresh_triples (one statement: the triple_term sums no longer re-read the
-- triple_vault rows just written).
DROP FUNCTION IF EXISTS refresh_triple_vault(TEXT[]);
DROP FUNCTION IF EXISTS refresh_triple_term(TEXT[]);

-- Pair rows are no longer recomputed (refresh_triples moves them by delta).
DROP FUNCTION IF EXISTS refresh_predicate_object(analytics_pair[]);
DROP FUNCTION IF EXISTS refresh_subject_predicate(analytics_pair[]);

-- The worker's entry point: refresh level 3 for a batch of term ids (any mix of atom,
-- triple, counter-triple and vault terms; duplicates and unknown ids are fine). Returns
-- the number of triples refreshed. Must run in its own READ COMMITTED transaction.
-- force_custom_plan: a worker's session outlives the table sizes it first planned for. A
-- plan PL/pgSQL cached for every later call while the tables were nearly empty (a new
-- database) scanned them whole on each call once they had grown, until an ANALYZE; a plan
-- made per call with the batch's ids costs a fraction of a millisecond.
CREATE OR REPLACE FUNCTION refresh_analytics(term_ids TEXT[]) RETURNS INT
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $$
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
    WITH hit AS (
        SELECT t.term_id, t.subject_id, t.predicate_id, t.object_id
          FROM triple t WHERE t.term_id = ANY(term_ids)
        UNION
        -- counter_term_id is not a unique key: one probe per id (OFFSET 0 keeps the
        -- subquery from being flattened into a hash join over all triples).
        SELECT c.term_id, c.subject_id, c.predicate_id, c.object_id
          FROM unnest(term_ids) AS id
         CROSS JOIN LATERAL (SELECT t.term_id, t.subject_id, t.predicate_id, t.object_id
                               FROM triple t WHERE t.counter_term_id = id OFFSET 0) c
    )
    SELECT array_agg(DISTINCT h.term_id),
           array_agg(DISTINCT ROW(h.predicate_id, h.object_id)::analytics_pair),
           array_agg(DISTINCT ROW(h.subject_id, h.predicate_id)::analytics_pair)
      INTO triple_ids, po_pairs, sp_pairs
      FROM hit h;

    -- EXCEPT hashes both sides (a `<> ALL (triple_ids)` filter compared each row with
    -- every id of the batch).
    SELECT coalesce(triple_ids, '{}') || coalesce(array_agg(gone.term_id), '{}')
      INTO triple_ids
      FROM (SELECT tt.term_id FROM triple_term tt WHERE tt.term_id = ANY(term_ids)
            EXCEPT
            SELECT unnest(triple_ids)) gone;

    IF cardinality(triple_ids) = 0 THEN
        RETURN 0;
    END IF;

    LOCK TABLE triple_vault, triple_term, predicate_object, subject_predicate IN ROW EXCLUSIVE MODE;
    PERFORM lock_analytics(triple_ids, po_pairs, sp_pairs);
    -- Each statement from here on reads a snapshot taken after every lock was granted.
    PERFORM refresh_triples(triple_ids);
    RETURN cardinality(triple_ids);
END
$$;
