-- Level 1: the merges that fold a batch's new events into atom, triple, position and vault.
--
-- The engine COPYs each batch straight into the event log, or, when the batch repeats a
-- logged event (that COPY fails on the key), inserts it from staging with INSERT ... ON
-- CONFLICT DO NOTHING (merge_staged_events in batch.sql; ingest/apply.rs). Either way an
-- AFTER INSERT ... REFERENCING NEW TABLE ... FOR EACH STATEMENT trigger per event table (COPY
-- fires them too) sees only the events really inserted, so redelivery never double counts. Each merge aggregates its transition table per key first
-- (an ON CONFLICT DO UPDATE may not touch a row twice in one statement), then upserts
-- set-based. Every statement here finds rows by primary key and has no join whose plan
-- depends on the batch size, so PL/pgSQL's cached plans fit batches of any size.

-- (b1, l1) is strictly later than (b2, l2); a NULL (b2, l2) means "nothing seen yet".
CREATE OR REPLACE FUNCTION is_later(b1 BIGINT, l1 BIGINT, b2 BIGINT, l2 BIGINT) RETURNS BOOLEAN
LANGUAGE sql IMMUTABLE AS $$
    SELECT (b1, l1) > (coalesce(b2, -1), coalesce(l2, -1))
$$;

CREATE OR REPLACE FUNCTION vault_type_name(t SMALLINT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT CASE t WHEN 0 THEN 'Atom' WHEN 1 THEN 'Triple' WHEN 2 THEN 'CounterTriple' END
$$;

-- market_cap = total_shares * share_price / 10^18, integer division.
CREATE OR REPLACE FUNCTION compute_market_cap(total_shares NUMERIC, share_price NUMERIC) RETURNS NUMERIC
LANGUAGE sql IMMUTABLE AS $$
    SELECT div(total_shares * share_price, 1000000000000000000::numeric)
$$;

-- Reorg bases (retract.sql): the statement each merge runs first, to hand
-- maintain_reorg_bases the batch's events it needs, as reorg_touch rows under the given
-- kinds: every event at or above reorg_base_bounds' low, and those below their key's
-- horizon (one primary-key probe each, only for events below the highest horizon); a large
-- batch's other events are never made into rows. `owner` is the account column of the
-- position kinds (receiver / sender). Spliced into each merge's body when it is created
-- below, so PL/pgSQL plans it once per session: run through EXECUTE it was planned at
-- every batch (about 0.5 ms per merge, most of what live batches paid for their bases).
CREATE OR REPLACE FUNCTION reorg_bases_statement(kinds SMALLINT[], owner TEXT) RETURNS TEXT
LANGUAGE sql IMMUTABLE AS $$
    SELECT format(
        'PERFORM maintain_reorg_bases(ARRAY(%s), b.top) FROM (SELECT t.top, r.low, r.high FROM'
        ' (SELECT max(block_number) AS top FROM new_events) t, reorg_base_bounds(t.top) r) b;',
        string_agg(format(
            'SELECT ROW(%1$s, e.term_id, %2$s, %3$s, e.block_number, e.log_index)::reorg_touch FROM new_events e'
            ' WHERE e.block_number >= b.low'
            ' UNION ALL '
            'SELECT ROW(%1$s, e.term_id, %2$s, %3$s, e.block_number, e.log_index)::reorg_touch FROM new_events e'
            ' CROSS JOIN LATERAL (SELECT 1 FROM reorg_base x WHERE x.kind = %1$s AND x.term_id = e.term_id'
            ' AND x.account_id = %2$s AND x.curve_id = %3$s AND e.block_number < x.horizon LIMIT 1) x'
            ' WHERE e.block_number < b.high',
            k, CASE WHEN k IN (1, 2) THEN format('e.%I', owner) ELSE '''''' END,
            CASE WHEN k IN (5, 6) THEN '-1' ELSE 'e.curve_id' END), ' UNION ALL '))
      FROM unnest(kinds) AS k
$$;

-- atom: latest AtomCreated per term wins ---------------------------------------------
DO $do$ BEGIN EXECUTE format($create$
CREATE OR REPLACE FUNCTION merge_atom_created() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    -- Reorg bases first (reorg_bases_statement): they read the rows as they stand before this batch.
    IF reorg_bases_active() THEN
        %s
    END IF;
    INSERT INTO atom AS a (term_id, wallet_id, creator_id, data, raw_data,
                           last_event_block, last_event_log_index)
    SELECT DISTINCT ON (term_id)
           term_id, atom_wallet, creator, atom_data_text,
           CASE WHEN atom_data_text IS NULL THEN atom_data END,
           block_number, log_index
      FROM new_events
     ORDER BY term_id, block_number DESC, log_index DESC
    ON CONFLICT (term_id) DO UPDATE SET
           wallet_id = EXCLUDED.wallet_id,
           creator_id = EXCLUDED.creator_id,
           data = EXCLUDED.data,
           raw_data = EXCLUDED.raw_data,
           last_event_block = EXCLUDED.last_event_block,
           last_event_log_index = EXCLUDED.last_event_log_index
     WHERE is_later(EXCLUDED.last_event_block, EXCLUDED.last_event_log_index,
                    a.last_event_block, a.last_event_log_index);
    RETURN NULL;
END
$fn$
$create$, reorg_bases_statement(ARRAY[5]::smallint[], NULL)); END $do$;

-- triple: latest TripleCreated per term wins -----------------------------------------
DO $do$ BEGIN EXECUTE format($create$
CREATE OR REPLACE FUNCTION merge_triple_created() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    -- Reorg bases first (reorg_bases_statement): they read the rows as they stand before this batch.
    IF reorg_bases_active() THEN
        %s
    END IF;
    INSERT INTO triple AS t (term_id, creator_id, subject_id, predicate_id, object_id,
                             counter_term_id, last_event_block, last_event_log_index)
    SELECT DISTINCT ON (term_id)
           term_id, creator, subject_id, predicate_id, object_id, counter_term_id,
           block_number, log_index
      FROM new_events
     ORDER BY term_id, block_number DESC, log_index DESC
    ON CONFLICT (term_id) DO UPDATE SET
           creator_id = EXCLUDED.creator_id,
           subject_id = EXCLUDED.subject_id,
           predicate_id = EXCLUDED.predicate_id,
           object_id = EXCLUDED.object_id,
           counter_term_id = EXCLUDED.counter_term_id,
           last_event_block = EXCLUDED.last_event_block,
           last_event_log_index = EXCLUDED.last_event_log_index
     WHERE is_later(EXCLUDED.last_event_block, EXCLUDED.last_event_log_index,
                    t.last_event_block, t.last_event_log_index);
    RETURN NULL;
END
$fn$
$create$, reorg_bases_statement(ARRAY[6]::smallint[], NULL)); END $do$;

-- Vault bookkeeping shared by the three vault events: make sure the vault exists, move
-- its position_count by the given delta, and let the latest event decide vault_type.
-- Rows must be unique per (term_id, curve_id).
CREATE OR REPLACE FUNCTION touch_vaults(touches vault_touch[]) RETURNS void LANGUAGE sql AS $$
    INSERT INTO vault AS v (term_id, curve_id, position_count, vault_type,
                            last_event_block, last_event_log_index)
    SELECT term_id, curve_id, position_delta, vault_type_name(vault_type),
           block_number, log_index
      FROM unnest(touches)
    ON CONFLICT (term_id, curve_id) DO UPDATE SET
           position_count = v.position_count + EXCLUDED.position_count,
           vault_type = CASE WHEN is_later(EXCLUDED.last_event_block, EXCLUDED.last_event_log_index,
                                           v.last_event_block, v.last_event_log_index)
                             THEN EXCLUDED.vault_type ELSE v.vault_type END,
           last_event_block = CASE WHEN is_later(EXCLUDED.last_event_block, EXCLUDED.last_event_log_index,
                                                 v.last_event_block, v.last_event_log_index)
                                   THEN EXCLUDED.last_event_block ELSE v.last_event_block END,
           last_event_log_index = CASE WHEN is_later(EXCLUDED.last_event_block, EXCLUDED.last_event_log_index,
                                                     v.last_event_block, v.last_event_log_index)
                                       THEN EXCLUDED.last_event_log_index ELSE v.last_event_log_index END
$$;

-- position: Deposited belongs to its receiver, Redeemed to its sender -----------------
-- merge_deposited_events() and merge_redeemed_events() are generated from the one template
-- below: only the owner column (receiver / sender) and the amount column (assets_after_fees
-- / assets) differ. Static PL/pgSQL, so each is planned once per session.
--
-- position_count moves by the number of positions that crossed shares > 0 in either
-- direction, read from the rows before and after the upsert: the cost is the batch's
-- distinct positions, never the size of a vault.
DO $do$
DECLARE
    k RECORD;
BEGIN
    FOR k IN SELECT * FROM (VALUES ('deposited_events', 'receiver', 'assets_after_fees', 'true', 1),
                                   ('redeemed_events', 'sender', 'assets', 'false', 2))
                        AS kinds(tbl, owner, amount, is_deposit, base_kind) LOOP
        EXECUTE format($create$
CREATE OR REPLACE FUNCTION %1$I() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    touches vault_touch[];
BEGIN
    -- Reorg bases first (reorg_bases_statement): they read the rows as they stand before this batch.
    IF reorg_bases_active() THEN
        %5$s
    END IF;
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
$create$, 'merge_' || k.tbl, k.owner, k.amount, k.is_deposit,
           reorg_bases_statement(ARRAY[k.base_kind, 3]::smallint[], k.owner));
    END LOOP;
END
$do$;

-- vault price: latest SharePriceChanged per vault wins -------------------------------
-- One upsert does both jobs of a vault event: price columns follow the latest price event,
-- vault_type the latest event of any kind. No join, so the cached plan fits any batch size.
DO $do$ BEGIN EXECUTE format($create$
CREATE OR REPLACE FUNCTION merge_share_price_changed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    -- Reorg bases first (reorg_bases_statement): they read the rows as they stand before this batch.
    IF reorg_bases_active() THEN
        %s
    END IF;
    INSERT INTO vault AS v (term_id, curve_id, total_shares, current_share_price, total_assets,
                            market_cap, position_count, vault_type,
                            last_price_block, last_price_log_index,
                            last_event_block, last_event_log_index)
    SELECT DISTINCT ON (term_id, curve_id)
           term_id, curve_id, total_shares, share_price, total_assets,
           compute_market_cap(total_shares, share_price), 0, vault_type_name(vault_type),
           block_number, log_index, block_number, log_index
      FROM new_events
     ORDER BY term_id, curve_id, block_number DESC, log_index DESC
    ON CONFLICT (term_id, curve_id) DO UPDATE SET
           total_shares = CASE WHEN is_later(EXCLUDED.last_price_block, EXCLUDED.last_price_log_index, v.last_price_block, v.last_price_log_index)
                               THEN EXCLUDED.total_shares ELSE v.total_shares END,
           current_share_price = CASE WHEN is_later(EXCLUDED.last_price_block, EXCLUDED.last_price_log_index, v.last_price_block, v.last_price_log_index)
                                      THEN EXCLUDED.current_share_price ELSE v.current_share_price END,
           total_assets = CASE WHEN is_later(EXCLUDED.last_price_block, EXCLUDED.last_price_log_index, v.last_price_block, v.last_price_log_index)
                               THEN EXCLUDED.total_assets ELSE v.total_assets END,
           market_cap = CASE WHEN is_later(EXCLUDED.last_price_block, EXCLUDED.last_price_log_index, v.last_price_block, v.last_price_log_index)
                             THEN EXCLUDED.market_cap ELSE v.market_cap END,
           last_price_block = CASE WHEN is_later(EXCLUDED.last_price_block, EXCLUDED.last_price_log_index, v.last_price_block, v.last_price_log_index)
                                   THEN EXCLUDED.last_price_block ELSE v.last_price_block END,
           last_price_log_index = CASE WHEN is_later(EXCLUDED.last_price_block, EXCLUDED.last_price_log_index, v.last_price_block, v.last_price_log_index)
                                       THEN EXCLUDED.last_price_log_index ELSE v.last_price_log_index END,
           vault_type = CASE WHEN is_later(EXCLUDED.last_event_block, EXCLUDED.last_event_log_index, v.last_event_block, v.last_event_log_index)
                             THEN EXCLUDED.vault_type ELSE v.vault_type END,
           last_event_block = CASE WHEN is_later(EXCLUDED.last_event_block, EXCLUDED.last_event_log_index, v.last_event_block, v.last_event_log_index)
                                   THEN EXCLUDED.last_event_block ELSE v.last_event_block END,
           last_event_log_index = CASE WHEN is_later(EXCLUDED.last_event_block, EXCLUDED.last_event_log_index, v.last_event_block, v.last_event_log_index)
                                       THEN EXCLUDED.last_event_log_index ELSE v.last_event_log_index END;
    RETURN NULL;
END
$fn$
$create$, reorg_bases_statement(ARRAY[3, 4]::smallint[], NULL)); END $do$;

-- The triggers ---------------------------------------------------------------------------
-- Created when missing, never replaced: what a trigger does is its function, replaced above,
-- and CREATE OR REPLACE TRIGGER would lock the event table against running batches at every
-- start. Changing a trigger's table, timing or function is a versioned migration.
CREATE OR REPLACE FUNCTION create_merge_trigger(trigger_name TEXT, table_name TEXT, function_name TEXT)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_trigger
                    WHERE tgname = trigger_name AND tgrelid = format('public.%I', table_name)::regclass) THEN
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT ON public.%I REFERENCING NEW TABLE AS new_events '
                       'FOR EACH STATEMENT EXECUTE FUNCTION %I()', trigger_name, table_name, function_name);
    END IF;
END
$$;

SELECT create_merge_trigger('trigger_atom_created', 'atom_created_events', 'merge_atom_created');
SELECT create_merge_trigger('trigger_triple_created', 'triple_created_events', 'merge_triple_created');
SELECT create_merge_trigger('trigger_deposited', 'deposited_events', 'merge_deposited_events');
SELECT create_merge_trigger('trigger_redeemed', 'redeemed_events', 'merge_redeemed_events');
SELECT create_merge_trigger('trigger_share_price_changed', 'share_price_changed_events', 'merge_share_price_changed');
