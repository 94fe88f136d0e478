-- What the engine calls once per batch. Keeping these here keeps the engine's SQL in one
-- place and makes each batch a handful of round trips.

-- Advisory-lock key of a term: one of 512 stripes picked by the first bytes of its id (ids
-- are keccak hashes, so evenly spread). Striping bounds the locks a batch holds: PostgreSQL's
-- shared lock table has room for about 64 per connection, and a 100,000-event batch touches
-- tens of thousands of terms. Two batches on different terms of one stripe just wait for
-- each other.
CREATE FUNCTION term_lock_key(term_id TEXT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT 7342000000 + (('x' || substr(term_id, 3, 8))::bit(32)::bigint & 511)
$$;

-- Every row a batch writes in levels 1-2 hangs off a term (atom, triple, its counter term,
-- vault, position, term). Taking the batch's term locks in one global order before merging
-- lets several engines share a consumer group without deadlocks or lost updates.
CREATE FUNCTION lock_terms(term_ids TEXT[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    k BIGINT;
BEGIN
    FOR k IN SELECT DISTINCT term_lock_key(id) FROM unnest(term_ids) AS id ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(k);
    END LOOP;
END
$$;

-- Session-local staging tables that the engine fills with binary COPY. Temporary, so
-- concurrent engines never see each other's rows; emptied at every commit.
CREATE FUNCTION create_staging_tables() RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY ARRAY['atom_created_events', 'triple_created_events', 'deposited_events',
                             'redeemed_events', 'share_price_changed_events', 'generic_events'] LOOP
        EXECUTE format('CREATE TEMP TABLE IF NOT EXISTS %I (LIKE public.%I) ON COMMIT DELETE ROWS',
                       'stage_' || t, t);
    END LOOP;
END
$$;

-- Move staged events into the log. ON CONFLICT DO NOTHING keeps redelivered events out of
-- the transition tables, so the statement-level triggers only see new events. Order matters
-- only for readability: every merge is order independent.
CREATE FUNCTION merge_staged_events(tables TEXT[]) RETURNS void LANGUAGE plpgsql AS $$
DECLARE
    t TEXT;
BEGIN
    FOREACH t IN ARRAY tables LOOP
        EXECUTE format('INSERT INTO public.%I SELECT * FROM pg_temp.%I ON CONFLICT DO NOTHING',
                       t, 'stage_' || t);
    END LOOP;
END
$$;

-- Level 2 cascade, once per batch over its distinct term ids: the term row (type, totals
-- over the term's vaults). Cost is the number of ids times the (few) curves per term.
CREATE FUNCTION cascade_terms(term_ids TEXT[]) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    -- EXECUTE ... USING plans with the array as a constant, so with its real length.
    EXECUTE $sql$
    WITH ids AS (
        SELECT DISTINCT id FROM unnest($1) AS id
    ), kinds AS (
        SELECT i.id,
               CASE WHEN EXISTS (SELECT 1 FROM atom a WHERE a.term_id = i.id) THEN 'Atom'
                    WHEN EXISTS (SELECT 1 FROM triple t WHERE t.term_id = i.id) THEN 'Triple'
                    WHEN EXISTS (SELECT 1 FROM triple t WHERE t.counter_term_id = i.id) THEN 'CounterTriple'
                    ELSE (SELECT v.vault_type FROM vault v WHERE v.term_id = i.id
                           ORDER BY v.last_event_block DESC, v.last_event_log_index DESC LIMIT 1)
               END AS type
          FROM ids i
    )
    INSERT INTO term AS t (id, type, atom_id, triple_id, total_assets, total_market_cap)
    SELECT k.id, k.type,
           CASE WHEN k.type = 'Atom' THEN k.id END,
           CASE WHEN k.type IN ('Triple', 'CounterTriple') THEN k.id END,
           coalesce(s.total_assets, 0), coalesce(s.total_market_cap, 0)
      FROM kinds k
      -- One index probe per term: linear whatever the planner guesses about the batch.
      CROSS JOIN LATERAL (SELECT sum(v.total_assets) AS total_assets, sum(v.market_cap) AS total_market_cap
                            FROM vault v WHERE v.term_id = k.id) s
     WHERE k.type IS NOT NULL
    ON CONFLICT (id) DO UPDATE SET
           type = EXCLUDED.type,
           atom_id = EXCLUDED.atom_id,
           triple_id = EXCLUDED.triple_id,
           total_assets = EXCLUDED.total_assets,
           total_market_cap = EXCLUDED.total_market_cap
     WHERE (t.type, t.atom_id, t.triple_id, t.total_assets, t.total_market_cap)
           IS DISTINCT FROM
           (EXCLUDED.type, EXCLUDED.atom_id, EXCLUDED.triple_id, EXCLUDED.total_assets, EXCLUDED.total_market_cap)
    $sql$ USING term_ids;
END
$fn$;
