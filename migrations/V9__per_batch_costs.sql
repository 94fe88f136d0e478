-- Fixed costs of a batch, found by timing small (live-mode) batches: they decide latency.
--
-- 1. cascade_terms decided a term's type with EXISTS (...) tests, which the planner turns
--    into hashed subplans: each batch read the whole atom and triple tables (3.5 ms per
--    batch at 10,000 events stored, growing with the tables). Scalar subqueries are never
--    hashed: each is one index probe per distinct term, whatever the tables hold. Being
--    probes only, the plan no longer depends on the batch size, so the statement is static
--    (planned once per session) instead of EXECUTE'd per batch.
--
-- 2. Staging tables were ON COMMIT DELETE ROWS. PostgreSQL then truncates every one of them
--    (heap, TOAST table, TOAST index) at each commit that touched any temporary table:
--    about 2 ms per commit. They now keep their rows across commits, and the merge empties
--    the tables it used, in the batch's own transaction (a rolled-back batch leaves nothing
--    either: its rows were never committed). DELETE is the cheap way for a small batch;
--    after a large one, TRUNCATE gives the space back at once (temporary tables are never
--    vacuumed).
--
-- 3. See the position merge at the end.

CREATE OR REPLACE FUNCTION cascade_terms(term_ids TEXT[]) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    -- Materialized: inlined, the type expression would be evaluated (and probed) twice.
    WITH kinds AS MATERIALIZED (
        SELECT i.id,
               -- coalesce stops at the first hit: one to three probes.
               coalesce((SELECT 'Atom'::text FROM atom a WHERE a.term_id = i.id),
                        (SELECT 'Triple'::text FROM triple t WHERE t.term_id = i.id),
                        (SELECT 'CounterTriple'::text FROM triple t
                          WHERE t.counter_term_id = i.id LIMIT 1),
                        (SELECT v.vault_type FROM vault v WHERE v.term_id = i.id
                          ORDER BY v.last_event_block DESC, v.last_event_log_index DESC
                          LIMIT 1)) AS type
          FROM (SELECT DISTINCT id FROM unnest(term_ids) AS id) i
    )
    INSERT INTO term AS t (id, type, atom_id, triple_id, total_assets, total_market_cap)
    SELECT k.id, k.type,
           CASE WHEN k.type = 'Atom' THEN k.id END,
           CASE WHEN k.type IN ('Triple', 'CounterTriple') THEN k.id END,
           coalesce(s.total_assets, 0), coalesce(s.total_market_cap, 0)
      FROM kinds k
      -- One index probe per term for its vaults' totals.
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
           (EXCLUDED.type, EXCLUDED.atom_id, EXCLUDED.triple_id, EXCLUDED.total_assets, EXCLUDED.total_market_cap);
END
$fn$;

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

-- Past this size a staging table is truncated rather than emptied row by row: 4 MB is about
-- 10,000 staged events, a few hundred live batches.
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

-- 3. The position merge was one function for both tables, its statement put together with
--    format() and EXECUTE'd, so planned anew for every batch (about 1.2 ms, a fifth of a
--    live batch). The statement has no join whose plan depends on the batch size any more
--    (sorts, primary-key probes, one upsert, one grouping), so a plan made for one size
--    fits every size and may be cached. The two functions below are generated from one
--    template, with the owner and amount columns filled in, as static PL/pgSQL; the
--    triggers keep their names.
DO $do$
DECLARE
    k RECORD;
BEGIN
    FOR k IN SELECT * FROM (VALUES ('deposited_events', 'receiver', 'assets_after_fees', 'true'),
                                   ('redeemed_events', 'sender', 'assets', 'false'))
                        AS kinds(tbl, owner, amount, is_deposit) LOOP
        EXECUTE format($create$
CREATE FUNCTION %1$I() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    touches vault_touch[];
BEGIN
    WITH ev AS (
        SELECT %2$I AS account_id, term_id, curve_id, total_shares, %3$I AS amount,
               vault_type, block_number, log_index
          FROM new_events
    ), latest AS (
        -- Per position: the latest event's totalShares and ordering, and the batch's sum,
        -- without a join (a join of two CTEs is what bad row estimates turn quadratic). The
        -- window is ordered like the DISTINCT ON, so one sort serves both.
        SELECT DISTINCT ON (account_id, term_id, curve_id)
               account_id, term_id, curve_id, total_shares, block_number, log_index,
               sum(amount) OVER (PARTITION BY account_id, term_id, curve_id
                                 ORDER BY block_number DESC, log_index DESC
                                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS amount
          FROM ev
         ORDER BY account_id, term_id, curve_id, block_number DESC, log_index DESC
    ), before AS MATERIALIZED (
        -- Materialized: read once, before the upsert changes the rows. One primary-key
        -- probe per batch position (LIMIT 1 keeps the planner from turning this into a
        -- hash join over the whole position table, whose cost would grow with the table).
        SELECT l.term_id, l.curve_id, p.shares
          FROM latest l
         CROSS JOIN LATERAL (SELECT q.shares FROM position q
                              WHERE q.account_id = l.account_id AND q.term_id = l.term_id
                                AND q.curve_id = l.curve_id
                              LIMIT 1) p
    ), merged AS (
        -- The columns of the other kind are 0 / NULL here, which leaves them unchanged below.
        INSERT INTO position AS p (account_id, term_id, curve_id, shares,
                                   total_deposit_assets_after_total_fees,
                                   total_redeem_assets_for_receiver,
                                   shares_block, shares_log_index,
                                   last_deposit_block, last_deposit_log_index,
                                   last_redeem_block, last_redeem_log_index)
        SELECT l.account_id, l.term_id, l.curve_id, l.total_shares,
               CASE WHEN %4$s THEN l.amount ELSE 0 END,
               CASE WHEN %4$s THEN 0 ELSE l.amount END,
               l.block_number, l.log_index,
               CASE WHEN %4$s THEN l.block_number END,
               CASE WHEN %4$s THEN l.log_index END,
               CASE WHEN %4$s THEN NULL ELSE l.block_number END,
               CASE WHEN %4$s THEN NULL ELSE l.log_index END
          FROM latest l
        ON CONFLICT (account_id, term_id, curve_id) DO UPDATE SET
               total_deposit_assets_after_total_fees =
                   p.total_deposit_assets_after_total_fees + EXCLUDED.total_deposit_assets_after_total_fees,
               total_redeem_assets_for_receiver =
                   p.total_redeem_assets_for_receiver + EXCLUDED.total_redeem_assets_for_receiver,
               shares = CASE WHEN is_later(EXCLUDED.shares_block, EXCLUDED.shares_log_index, p.shares_block, p.shares_log_index)
                             THEN EXCLUDED.shares ELSE p.shares END,
               shares_block = CASE WHEN is_later(EXCLUDED.shares_block, EXCLUDED.shares_log_index, p.shares_block, p.shares_log_index)
                                   THEN EXCLUDED.shares_block ELSE p.shares_block END,
               shares_log_index = CASE WHEN is_later(EXCLUDED.shares_block, EXCLUDED.shares_log_index, p.shares_block, p.shares_log_index)
                                       THEN EXCLUDED.shares_log_index ELSE p.shares_log_index END,
               last_deposit_block = CASE WHEN is_later(EXCLUDED.last_deposit_block, EXCLUDED.last_deposit_log_index, p.last_deposit_block, p.last_deposit_log_index)
                                         THEN EXCLUDED.last_deposit_block ELSE p.last_deposit_block END,
               last_deposit_log_index = CASE WHEN is_later(EXCLUDED.last_deposit_block, EXCLUDED.last_deposit_log_index, p.last_deposit_block, p.last_deposit_log_index)
                                             THEN EXCLUDED.last_deposit_log_index ELSE p.last_deposit_log_index END,
               last_redeem_block = CASE WHEN is_later(EXCLUDED.last_redeem_block, EXCLUDED.last_redeem_log_index, p.last_redeem_block, p.last_redeem_log_index)
                                        THEN EXCLUDED.last_redeem_block ELSE p.last_redeem_block END,
               last_redeem_log_index = CASE WHEN is_later(EXCLUDED.last_redeem_block, EXCLUDED.last_redeem_log_index, p.last_redeem_block, p.last_redeem_log_index)
                                            THEN EXCLUDED.last_redeem_log_index ELSE p.last_redeem_log_index END
        RETURNING p.term_id, p.curve_id, p.shares
    ), vault_changes AS (
        -- Everything the vaults need, unioned and grouped once (no joins): the latest event
        -- per vault, and how many of its positions became / stopped being active. Every row
        -- of `before` is also in `merged`, so the two sums give the net change.
        SELECT term_id, curve_id, vault_type, block_number, log_index, 0 AS delta FROM ev
        UNION ALL
        SELECT term_id, curve_id, NULL, NULL, NULL, (shares > 0)::int FROM merged
        UNION ALL
        SELECT term_id, curve_id, NULL, NULL, NULL, -(shares > 0)::int FROM before
    ), vaults AS (
        SELECT term_id, curve_id,
               (array_agg(vault_type ORDER BY block_number DESC, log_index DESC)
                    FILTER (WHERE block_number IS NOT NULL))[1] AS vault_type,
               max(block_number) AS block_number,
               (array_agg(log_index ORDER BY block_number DESC, log_index DESC)
                    FILTER (WHERE block_number IS NOT NULL))[1] AS log_index,
               sum(delta) AS delta
          FROM vault_changes
         GROUP BY term_id, curve_id
    )
    SELECT array_agg(ROW(term_id, curve_id, vault_type, block_number, log_index, delta)::vault_touch)
      INTO touches
      FROM vaults;
    PERFORM touch_vaults(touches);
    RETURN NULL;
END
$fn$
$create$, 'merge_' || k.tbl, k.owner, k.amount, k.is_deposit);
    END LOOP;
END
$do$;

DROP TRIGGER trigger_deposited ON deposited_events;
CREATE TRIGGER trigger_deposited
    AFTER INSERT ON deposited_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION merge_deposited_events();

DROP TRIGGER trigger_redeemed ON redeemed_events;
CREATE TRIGGER trigger_redeemed
    AFTER INSERT ON redeemed_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION merge_redeemed_events();

DROP FUNCTION merge_position_events();
