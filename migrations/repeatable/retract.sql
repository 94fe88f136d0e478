-- Retraction of orphaned events (reorg.sql decides which; README -> Chain reorganizations),
-- at a cost that follows the reorg, not the log.
--
-- A touched row's sums move by the retracted amounts (exact: they are sums). Its "latest"
-- fields need the latest event left of its key, which lies either at or above the fork (a
-- block range: the log's key leads with block_number) or below it. Below the fork the
-- search walks down in growing block ranges and stops at the key's base (reorg_base, V5):
-- the latest event applied below the base's horizon, kept by every live batch for the keys
-- it touches near its highest block. A key without a usable base is searched down to the
-- first block (counted in reorg.unbased_searches): exact, but it reads the log.

-- Blocks below a live batch's highest block whose keys get bases: the deepest reorg
-- answered without reading the log. rps.reorg_window is set per engine session
-- (--reorg-window); 0 (--backfill, or a session that never set it) keeps no bases.
CREATE OR REPLACE FUNCTION reorg_window() RETURNS BIGINT
LANGUAGE sql STABLE AS $$
    SELECT coalesce(nullif(current_setting('rps.reorg_window', true), '')::bigint, 0)
$$;

-- Whether a merge has base work at all: a window (live), or bases to fold into. One probe:
-- --backfill with no bases left pays nothing else.
CREATE OR REPLACE FUNCTION reorg_bases_active() RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT reorg_window() > 0 OR EXISTS (SELECT 1 FROM reorg_base)
$$;

-- Which of a batch's events (highest block `top`) a merge hands to maintain_reorg_bases:
-- those at or above `low` may need a new base, those below `high` may fold into one (see
-- reorg_bases_statement in merge.sql).
CREATE OR REPLACE FUNCTION reorg_base_bounds(top BIGINT, OUT low BIGINT, OUT high BIGINT)
LANGUAGE sql STABLE AS $$
    SELECT CASE WHEN reorg_window() > 0 THEN top - reorg_window() END, (SELECT max(horizon) FROM reorg_base)
$$;

-- The latest applied event of a key and kind, as its row holds it (no row: none). A table
-- function of one SELECT, so that it is inlined into the query that joins it (LEFT JOIN
-- LATERAL): called as a function per key, its six branches were planned per call, which
-- made live batches several times slower.
CREATE OR REPLACE FUNCTION reorg_row_pointer(k SMALLINT, term TEXT, account TEXT, curve NUMERIC)
RETURNS TABLE (block_number BIGINT, log_index BIGINT)
LANGUAGE sql STABLE AS $$
    SELECT p.last_deposit_block, p.last_deposit_log_index FROM position p
     WHERE k = 1 AND p.account_id = account AND p.term_id = term AND p.curve_id = curve
    UNION ALL
    SELECT p.last_redeem_block, p.last_redeem_log_index FROM position p
     WHERE k = 2 AND p.account_id = account AND p.term_id = term AND p.curve_id = curve
    UNION ALL
    SELECT v.last_event_block, v.last_event_log_index FROM vault v
     WHERE k = 3 AND v.term_id = term AND v.curve_id = curve
    UNION ALL
    SELECT v.last_price_block, v.last_price_log_index FROM vault v
     WHERE k = 4 AND v.term_id = term AND v.curve_id = curve
    UNION ALL
    SELECT a.last_event_block, a.last_event_log_index FROM atom a WHERE k = 5 AND a.term_id = term
    UNION ALL
    SELECT t.last_event_block, t.last_event_log_index FROM triple t WHERE k = 6 AND t.term_id = term
$$;

-- Called by each merge before it changes any row (reorg_bases_statement in merge.sql), with
-- the batch's events that reorg_base_bounds selects. A key touched at or above top - window
-- without a base gets one from its row as it stands: every event applied so far is at or
-- below the row's latest, so the horizon is the window's bottom or just above that latest,
-- whichever is higher. Then every event below its key's horizon folds in.
-- Term locks (batch.sql) serialize the batches that touch one key.
-- Generic plans: with custom ones (PL/pgSQL's first choice, kept while they look cheaper)
-- both statements were planned at every call, 0.33 ms against 0.07 ms per call; every plan
-- here probes by primary key whatever the array's size.
CREATE OR REPLACE FUNCTION maintain_reorg_bases(touches reorg_touch[], top BIGINT) RETURNS void
LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan AS $fn$
DECLARE
    w BIGINT := reorg_window();
BEGIN
    IF coalesce(cardinality(touches), 0) = 0 THEN
        RETURN;
    END IF;
    IF w > 0 THEN
        INSERT INTO reorg_base (kind, term_id, account_id, curve_id, horizon, block_number, log_index)
        SELECT k.kind, k.term_id, k.account_id, k.curve_id,
               greatest(top - w, coalesce(p.block_number + 1, 0)), p.block_number, p.log_index
          FROM (SELECT DISTINCT t.kind, t.term_id, t.account_id, t.curve_id
                  FROM unnest(touches) t WHERE t.block_number >= top - w) k
          LEFT JOIN LATERAL reorg_row_pointer(k.kind, k.term_id, k.account_id, k.curve_id) p ON true
        ON CONFLICT DO NOTHING;
    END IF;
    UPDATE reorg_base b SET block_number = f.block_number, log_index = f.log_index
      FROM (SELECT DISTINCT ON (t.kind, t.term_id, t.account_id, t.curve_id) t.*
              FROM unnest(touches) t
              JOIN reorg_base x ON (x.kind, x.term_id, x.account_id, x.curve_id)
                                 = (t.kind, t.term_id, t.account_id, t.curve_id)
             WHERE t.block_number < x.horizon
             ORDER BY t.kind, t.term_id, t.account_id, t.curve_id, t.block_number DESC, t.log_index DESC) f
     WHERE (b.kind, b.term_id, b.account_id, b.curve_id) = (f.kind, f.term_id, f.account_id, f.curve_id)
       AND is_later(f.block_number, f.log_index, b.block_number, b.log_index);
END
$fn$;

-- Bases that can go, after a live batch, in a transaction of its own; returns how many
-- went. `tops` is the batch's highest block per event table it read: a stream the batch
-- read nothing from is caught up, and does not hold back the kinds it feeds. A key whose
-- latest event is more than a window below the highest block of the streams that feed its
-- kind is idle: those streams are past it, so no reorg within the window can retract it
-- (however far another stream has run ahead), and its row says what the base would (a later
-- event makes a new base). Only bases more than two windows old are looked at, a busy one
-- once a window. Not inside the batch's transactions: a batch's parts share term lock
-- stripes, and two of them pruning each other's bases while creating their own
-- deadlocked. A base another transaction holds is left for later. Correctness never needs
-- a base: a key without one is searched further down.
CREATE OR REPLACE FUNCTION prune_reorg_bases(tables TEXT[], tops BIGINT[]) RETURNS BIGINT LANGUAGE sql AS $$
    WITH kind_tops AS (
        SELECT f.kind, min(t.top) AS top
          FROM (VALUES (1, 'deposited_events'), (2, 'redeemed_events'), (3, 'deposited_events'),
                       (3, 'redeemed_events'), (3, 'share_price_changed_events'),
                       (4, 'share_price_changed_events'), (5, 'atom_created_events'),
                       (6, 'triple_created_events')) AS f(kind, tbl)
          JOIN unnest(tables, tops) AS t(tbl, top) USING (tbl)
         GROUP BY f.kind
    ), old AS (
        SELECT b.kind, b.term_id, b.account_id, b.curve_id, p.block_number AS latest, k.top
          FROM reorg_base b
          JOIN kind_tops k ON k.kind = b.kind
          LEFT JOIN LATERAL reorg_row_pointer(b.kind, b.term_id, b.account_id, b.curve_id) p ON true
         WHERE b.horizon < k.top - 2 * reorg_window() AND b.checked < k.top - reorg_window()
           FOR UPDATE OF b SKIP LOCKED
    ), gone AS (
        DELETE FROM reorg_base b USING old o
         WHERE (b.kind, b.term_id, b.account_id, b.curve_id) = (o.kind, o.term_id, o.account_id, o.curve_id)
           AND coalesce(o.latest, -1) < o.top - reorg_window()
        RETURNING 1
    ), busy AS (
        UPDATE reorg_base b SET checked = o.top FROM old o
         WHERE (b.kind, b.term_id, b.account_id, b.curve_id) = (o.kind, o.term_id, o.account_id, o.curve_id)
           AND o.latest >= o.top - reorg_window()
    )
    SELECT count(*) FROM gone;
$$;

-- Every logged event under the keys of reorg_base's kinds. A block range on it reaches each
-- table's primary key scan (UNION ALL).
CREATE OR REPLACE VIEW reorg_keyed_events AS
SELECT 1::smallint AS kind, term_id, receiver AS account_id, curve_id, block_number, log_index FROM deposited_events
UNION ALL
SELECT 2::smallint, term_id, sender, curve_id, block_number, log_index FROM redeemed_events
UNION ALL
SELECT 3::smallint, term_id, ''::text COLLATE "C", curve_id, block_number, log_index FROM deposited_events
UNION ALL
SELECT 3::smallint, term_id, ''::text COLLATE "C", curve_id, block_number, log_index FROM redeemed_events
UNION ALL
SELECT 3::smallint, term_id, ''::text COLLATE "C", curve_id, block_number, log_index FROM share_price_changed_events
UNION ALL
SELECT 4::smallint, term_id, ''::text COLLATE "C", curve_id, block_number, log_index FROM share_price_changed_events
UNION ALL
SELECT 5::smallint, term_id, ''::text COLLATE "C", -1::numeric, block_number, log_index FROM atom_created_events
UNION ALL
SELECT 6::smallint, term_id, ''::text COLLATE "C", -1::numeric, block_number, log_index FROM triple_created_events;

-- Retract the network's events from block `from_block` on that precede their stream's copy
-- of reorg `reorg_no`'s notice (or, given `only_hash`, the events of that one block at
-- `from_block`), and return every level 1-2 row they touched to what the remaining log
-- implies; level 3 follows through the outbox. Returns the number of events retracted.
-- Runs under the exclusive reorg lock, so no batch writes meanwhile.
CREATE OR REPLACE FUNCTION retract_events(net TEXT, from_block BIGINT, only_hash TEXT, reorg_no BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $fn$
DECLARE
    n BIGINT;
    deleted BIGINT;
    k RECORD;
    to_block BIGINT := CASE WHEN only_hash IS NULL THEN 9223372036854775807 ELSE from_block END;
    searches BIGINT;
    terms TEXT[];
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS retracted_events (
        kind TEXT, block_number BIGINT, block_hash TEXT, log_index BIGINT, term_id TEXT COLLATE "C",
        counter_term_id TEXT COLLATE "C", account_id TEXT COLLATE "C", curve_id NUMERIC, amount NUMERIC
    ) ON COMMIT DROP;
    TRUNCATE pg_temp.retracted_events;
    -- One DELETE per event table, each returning what the rebuild needs of the event.
    n := 0;
    FOR k IN SELECT * FROM (VALUES
            ('atom_created_events', 'atom', 'e.term_id', 'NULL::text', 'NULL::text', 'NULL::numeric', 'NULL::numeric'),
            ('triple_created_events', 'triple', 'e.term_id', 'e.counter_term_id', 'NULL::text', 'NULL::numeric',
             'NULL::numeric'),
            ('deposited_events', 'deposit', 'e.term_id', 'NULL::text', 'e.receiver', 'e.curve_id', 'e.assets_after_fees'),
            ('redeemed_events', 'redeem', 'e.term_id', 'NULL::text', 'e.sender', 'e.curve_id', 'e.assets'),
            ('share_price_changed_events', 'price', 'e.term_id', 'NULL::text', 'NULL::text', 'e.curve_id',
             'NULL::numeric'),
            ('generic_events', 'generic', 'NULL::text', 'NULL::text', 'NULL::text', 'NULL::numeric', 'NULL::numeric'))
            AS t(tbl, kind, term, counter_term, account, curve, amount) LOOP
        EXECUTE format(
            'WITH gone AS (DELETE FROM %I e WHERE e.network = $1 AND e.block_number BETWEEN $2 AND $3'
            ' AND (CASE WHEN $4 IS NULL THEN precedes_reorg(e.stream_key, e.stream_entry, $5)'
            ' ELSE e.block_hash = $4 END)'
            ' RETURNING %L, e.block_number, e.block_hash, e.log_index, %s, %s, %s, %s, %s)'
            ' INSERT INTO pg_temp.retracted_events SELECT * FROM gone',
            k.tbl, k.kind, k.term, k.counter_term, k.account, k.curve, k.amount)
          USING net, from_block, to_block, only_hash, reorg_no;
        GET DIAGNOSTICS deleted = ROW_COUNT;
        n := n + deleted;
    END LOOP;

    INSERT INTO retracted_block (network, block_number, block_hash, reorg_id)
    SELECT DISTINCT net, e.block_number, e.block_hash, reorg_no FROM pg_temp.retracted_events e
    ON CONFLICT DO NOTHING;
    IF n = 0 THEN
        RETURN 0;
    END IF;

    PERFORM retract_triple_analytics(ARRAY(SELECT DISTINCT e.term_id FROM pg_temp.retracted_events e
                                            WHERE e.kind = 'triple'));
    searches := find_remaining_latest(from_block);
    PERFORM rebuild_atoms_and_triples();
    PERFORM rebuild_positions_and_vaults();
    PERFORM lower_reorg_bases(from_block);
    UPDATE reorg r SET unbased_searches = r.unbased_searches + searches WHERE r.id = reorg_no;

    terms := ARRAY(SELECT DISTINCT id FROM (
                       SELECT e.term_id AS id FROM pg_temp.retracted_events e WHERE e.term_id IS NOT NULL
                       UNION ALL
                       SELECT e.counter_term_id FROM pg_temp.retracted_events e WHERE e.counter_term_id IS NOT NULL) ids);
    PERFORM cascade_terms(terms);
    -- A term none of whose atom, triple or vaults is left has no row.
    DELETE FROM term t WHERE t.id = ANY(terms)
       AND NOT EXISTS (SELECT 1 FROM atom a WHERE a.term_id = t.id)
       AND NOT EXISTS (SELECT 1 FROM triple x WHERE x.term_id = t.id)
       AND NOT EXISTS (SELECT 1 FROM triple x WHERE x.counter_term_id = t.id)
       AND NOT EXISTS (SELECT 1 FROM vault v WHERE v.term_id = t.id);
    IF cardinality(terms) > 0 THEN
        INSERT INTO term_update_outbox (term_ids) VALUES (terms);
    END IF;
    RETURN n;
END
$fn$;

-- For every key and kind the retracted events touched (pg_temp.reorg_keys), the latest
-- event left in the log: first at or above the fork, then walking down from it in block
-- ranges that grow fourfold, each key down to its base's horizon (then the base answers)
-- or, without a usable base, to block 0. Returns how many keys searched below the fork
-- without a base (the ones whose search can read the log down to block 0).
CREATE OR REPLACE FUNCTION find_remaining_latest(from_block BIGINT) RETURNS BIGINT
LANGUAGE plpgsql AS $fn$
DECLARE
    hi BIGINT := from_block;
    lo BIGINT;
    step BIGINT := greatest(reorg_window(), 64);
    unbased BIGINT;
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS reorg_keys (
        kind SMALLINT, term_id TEXT COLLATE "C", account_id TEXT COLLATE "C", curve_id NUMERIC,
        floor BIGINT, base_block BIGINT, base_log BIGINT, block_number BIGINT, log_index BIGINT,
        done BOOLEAN NOT NULL DEFAULT false, based BOOLEAN NOT NULL DEFAULT false,
        PRIMARY KEY (kind, term_id, account_id, curve_id)
    ) ON COMMIT DROP;
    TRUNCATE pg_temp.reorg_keys;
    INSERT INTO pg_temp.reorg_keys (kind, term_id, account_id, curve_id)
    SELECT DISTINCT k.kind, k.term_id, k.account_id, k.curve_id
      FROM pg_temp.retracted_events e
     CROSS JOIN LATERAL (VALUES
            (CASE e.kind WHEN 'deposit' THEN 1 WHEN 'redeem' THEN 2 WHEN 'price' THEN 4
                         WHEN 'atom' THEN 5 WHEN 'triple' THEN 6 END::smallint,
             e.term_id, coalesce(e.account_id, ''), coalesce(e.curve_id, -1)),
            (CASE WHEN e.kind IN ('deposit', 'redeem', 'price') THEN 3 END::smallint,
             e.term_id, '', e.curve_id)) AS k(kind, term_id, account_id, curve_id)
     WHERE k.kind IS NOT NULL;
    UPDATE pg_temp.reorg_keys k SET floor = b.horizon, base_block = b.block_number, base_log = b.log_index,
                                    based = true
      FROM reorg_base b
     WHERE (b.kind, b.term_id, b.account_id, b.curve_id) = (k.kind, k.term_id, k.account_id, k.curve_id)
       AND b.horizon <= from_block;
    UPDATE pg_temp.reorg_keys SET floor = 0 WHERE NOT based;

    PERFORM settle_remaining_latest(from_block, 9223372036854775807);
    SELECT count(*) INTO unbased FROM pg_temp.reorg_keys WHERE NOT done AND NOT based;
    LOOP
        SELECT min(floor) INTO lo FROM pg_temp.reorg_keys WHERE NOT done;
        EXIT WHEN lo IS NULL;
        lo := greatest(hi - step, lo);
        PERFORM settle_remaining_latest(lo, hi);
        -- Keys whose range reached their floor: the base holds their latest (or none).
        UPDATE pg_temp.reorg_keys SET block_number = base_block, log_index = base_log, done = true
         WHERE NOT done AND floor >= lo;
        hi := lo;
        step := step * 4;
    END LOOP;
    RETURN unbased;
END
$fn$;

-- Bases above the fork. One of a touched key summed up events that may be gone: a key whose
-- latest event left is below the fork gets that one as its base at the fork, another key
-- loses its base. One of an untouched key whose latest event below its horizon is below the
-- fork comes down to the fork, so that it still serves when the new chain is reorganized.
CREATE OR REPLACE FUNCTION lower_reorg_bases(from_block BIGINT) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE reorg_base b SET horizon = from_block
     WHERE b.horizon > from_block AND coalesce(b.block_number < from_block, true)
       AND NOT EXISTS (SELECT 1 FROM pg_temp.reorg_keys k
                        WHERE (b.kind, b.term_id, b.account_id, b.curve_id) = (k.kind, k.term_id, k.account_id, k.curve_id));
    UPDATE reorg_base b SET horizon = from_block, block_number = k.block_number, log_index = k.log_index
      FROM pg_temp.reorg_keys k
     WHERE (b.kind, b.term_id, b.account_id, b.curve_id) = (k.kind, k.term_id, k.account_id, k.curve_id)
       AND b.horizon > from_block AND coalesce(k.block_number < from_block, true);
    DELETE FROM reorg_base b USING pg_temp.reorg_keys k
     WHERE (b.kind, b.term_id, b.account_id, b.curve_id) = (k.kind, k.term_id, k.account_id, k.curve_id)
       AND b.horizon > from_block;
END
$fn$;

-- One step of find_remaining_latest: the keys not yet settled that have an event in blocks
-- [lo, hi), above their floor, take the latest of them.
CREATE OR REPLACE FUNCTION settle_remaining_latest(lo BIGINT, hi BIGINT) RETURNS void
LANGUAGE plpgsql AS $fn$
BEGIN
    UPDATE pg_temp.reorg_keys k SET block_number = f.block_number, log_index = f.log_index, done = true
      FROM (SELECT DISTINCT ON (e.kind, e.term_id, e.account_id, e.curve_id)
                   e.kind, e.term_id, e.account_id, e.curve_id, e.block_number, e.log_index
              FROM reorg_keyed_events e
              JOIN pg_temp.reorg_keys x ON (x.kind, x.term_id, x.account_id, x.curve_id)
                                         = (e.kind, e.term_id, e.account_id, e.curve_id)
             WHERE e.block_number >= lo AND e.block_number < hi AND NOT x.done AND e.block_number >= x.floor
             ORDER BY e.kind, e.term_id, e.account_id, e.curve_id, e.block_number DESC, e.log_index DESC) f
     WHERE (k.kind, k.term_id, k.account_id, k.curve_id) = (f.kind, f.term_id, f.account_id, f.curve_id);
END
$fn$;

-- Atoms and triples from their latest AtomCreated / TripleCreated left (the columns as in
-- snapshot.atom and snapshot.triple); none left, no row.
CREATE OR REPLACE FUNCTION rebuild_atoms_and_triples() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM atom a USING pg_temp.reorg_keys k WHERE k.kind = 5 AND a.term_id = k.term_id;
    INSERT INTO atom
    SELECT DISTINCT ON (e.term_id)
           e.term_id, e.atom_wallet, e.creator, e.atom_data_text,
           CASE WHEN e.atom_data_text IS NULL THEN e.atom_data END,
           NULL, NULL, NULL, NULL, NULL, 'Pending', e.block_number, e.log_index
      FROM pg_temp.reorg_keys k
      JOIN atom_created_events e ON (e.block_number, e.log_index, e.term_id) = (k.block_number, k.log_index, k.term_id)
     WHERE k.kind = 5
     ORDER BY e.term_id, e.block_hash;
    DELETE FROM triple t USING pg_temp.reorg_keys k WHERE k.kind = 6 AND t.term_id = k.term_id;
    INSERT INTO triple
    SELECT DISTINCT ON (e.term_id)
           e.term_id, e.creator, e.subject_id, e.predicate_id, e.object_id, e.counter_term_id,
           e.block_number, e.log_index
      FROM pg_temp.reorg_keys k
      JOIN triple_created_events e ON (e.block_number, e.log_index, e.term_id) = (k.block_number, k.log_index, k.term_id)
     WHERE k.kind = 6
     ORDER BY e.term_id, e.block_hash;
END
$fn$;

-- Positions and vaults touched by the retracted events. A position's sums lose the
-- retracted amounts; its last deposit and last redeem are the latest left of each (found by
-- find_remaining_latest; a kind it lost nothing of keeps its own), its shares those of the
-- later of the two; neither left, no row. A vault takes its type from its latest event
-- left and its price columns from its latest price event left; its position_count moves by
-- the positions that crossed shares > 0, as in the merges. The columns as in
-- snapshot.positions_of and snapshot.vaults_of.
CREATE OR REPLACE FUNCTION rebuild_positions_and_vaults() RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS retracted_positions (
        account_id TEXT COLLATE "C", term_id TEXT COLLATE "C", curve_id NUMERIC, was_active INT,
        deposits NUMERIC, redeems NUMERIC
    ) ON COMMIT DROP;
    TRUNCATE pg_temp.retracted_positions;
    INSERT INTO pg_temp.retracted_positions
    SELECT e.account_id, e.term_id, e.curve_id, (p.shares > 0)::int,
           coalesce(sum(e.amount) FILTER (WHERE e.kind = 'deposit'), 0),
           coalesce(sum(e.amount) FILTER (WHERE e.kind = 'redeem'), 0)
      FROM pg_temp.retracted_events e
      JOIN position p USING (account_id, term_id, curve_id)
     WHERE e.kind IN ('deposit', 'redeem')
     GROUP BY e.account_id, e.term_id, e.curve_id, p.shares;

    WITH latest AS MATERIALIZED (
        SELECT r.account_id, r.term_id, r.curve_id, r.deposits, r.redeems,
               CASE WHEN d.kind IS NULL THEN p.last_deposit_block ELSE d.block_number END AS db,
               CASE WHEN d.kind IS NULL THEN p.last_deposit_log_index ELSE d.log_index END AS dl,
               CASE WHEN x.kind IS NULL THEN p.last_redeem_block ELSE x.block_number END AS rb,
               CASE WHEN x.kind IS NULL THEN p.last_redeem_log_index ELSE x.log_index END AS rl
          FROM pg_temp.retracted_positions r
          JOIN position p USING (account_id, term_id, curve_id)
          LEFT JOIN pg_temp.reorg_keys d ON (d.kind, d.account_id, d.term_id, d.curve_id) = (1, r.account_id, r.term_id, r.curve_id)
          LEFT JOIN pg_temp.reorg_keys x ON (x.kind, x.account_id, x.term_id, x.curve_id) = (2, r.account_id, r.term_id, r.curve_id)
    ), gone AS (
        DELETE FROM position p USING latest l
         WHERE (p.account_id, p.term_id, p.curve_id) = (l.account_id, l.term_id, l.curve_id)
           AND l.db IS NULL AND l.rb IS NULL
    )
    UPDATE position p SET
           total_deposit_assets_after_total_fees = p.total_deposit_assets_after_total_fees - l.deposits,
           total_redeem_assets_for_receiver = p.total_redeem_assets_for_receiver - l.redeems,
           last_deposit_block = l.db, last_deposit_log_index = l.dl,
           last_redeem_block = l.rb, last_redeem_log_index = l.rl,
           shares_block = s.block_number, shares_log_index = s.log_index, shares = s.total_shares
      FROM latest l
     CROSS JOIN LATERAL (
            SELECT e.block_number, e.log_index, e.total_shares FROM deposited_events e
             WHERE is_later(l.db, l.dl, l.rb, l.rl) AND (e.block_number, e.log_index) = (l.db, l.dl)
               AND (e.receiver, e.term_id, e.curve_id) = (l.account_id, l.term_id, l.curve_id)
            UNION ALL
            SELECT e.block_number, e.log_index, e.total_shares FROM redeemed_events e
             WHERE NOT coalesce(is_later(l.db, l.dl, l.rb, l.rl), false) AND (e.block_number, e.log_index) = (l.rb, l.rl)
               AND (e.sender, e.term_id, e.curve_id) = (l.account_id, l.term_id, l.curve_id)
            LIMIT 1) s
     WHERE (p.account_id, p.term_id, p.curve_id) = (l.account_id, l.term_id, l.curve_id);

    WITH crossed AS (
        SELECT r.term_id, r.curve_id, sum(coalesce((p.shares > 0)::int, 0) - r.was_active) AS delta
          FROM pg_temp.retracted_positions r
          LEFT JOIN position p USING (account_id, term_id, curve_id)
         GROUP BY r.term_id, r.curve_id
    ), latest AS MATERIALIZED (
        SELECT k.term_id, k.curve_id, k.block_number AS eb, k.log_index AS el,
               CASE WHEN pk.kind IS NULL THEN v.last_price_block ELSE pk.block_number END AS pb,
               CASE WHEN pk.kind IS NULL THEN v.last_price_log_index ELSE pk.log_index END AS pl,
               v.position_count + coalesce(c.delta, 0) AS position_count
          FROM pg_temp.reorg_keys k
          JOIN vault v USING (term_id, curve_id)
          LEFT JOIN pg_temp.reorg_keys pk ON (pk.kind, pk.term_id, pk.curve_id) = (4, k.term_id, k.curve_id)
          LEFT JOIN crossed c ON (c.term_id, c.curve_id) = (k.term_id, k.curve_id)
         WHERE k.kind = 3
    ), gone AS (
        DELETE FROM vault v USING latest l
         WHERE (v.term_id, v.curve_id) = (l.term_id, l.curve_id) AND l.eb IS NULL
    )
    UPDATE vault v SET
           total_shares = coalesce(pr.total_shares, 0), current_share_price = coalesce(pr.share_price, 0),
           total_assets = coalesce(pr.total_assets, 0),
           market_cap = coalesce(compute_market_cap(pr.total_shares, pr.share_price), 0),
           position_count = l.position_count, vault_type = vault_type_name(ev.vault_type),
           last_price_block = l.pb, last_price_log_index = l.pl,
           last_event_block = l.eb, last_event_log_index = l.el
      FROM latest l
      LEFT JOIN LATERAL (
            SELECT e.total_shares, e.share_price, e.total_assets FROM share_price_changed_events e
             WHERE (e.block_number, e.log_index, e.term_id, e.curve_id) = (l.pb, l.pl, l.term_id, l.curve_id)
             LIMIT 1) pr ON true
     CROSS JOIN LATERAL (
            SELECT e.vault_type FROM deposited_events e
             WHERE (e.block_number, e.log_index, e.term_id, e.curve_id) = (l.eb, l.el, l.term_id, l.curve_id)
            UNION ALL
            SELECT e.vault_type FROM redeemed_events e
             WHERE (e.block_number, e.log_index, e.term_id, e.curve_id) = (l.eb, l.el, l.term_id, l.curve_id)
            UNION ALL
            SELECT e.vault_type FROM share_price_changed_events e
             WHERE (e.block_number, e.log_index, e.term_id, e.curve_id) = (l.eb, l.el, l.term_id, l.curve_id)
            LIMIT 1) ev
     WHERE (v.term_id, v.curve_id) = (l.term_id, l.curve_id);
END
$fn$;

-- Level 3 of triples that lose their TripleCreated events: take each one's triple_term row
-- out of its pair rows (a pair row left with no triple goes), and delete its triple_term
-- and triple_vault rows. The outbox then refreshes the triples that still exist, as new
-- ones. Needed here because the pair deltas of refresh_triples (analytics.sql) read
-- the triple's row, which the recompute may delete. Same locks, in the same order, as a
-- refresh.
CREATE OR REPLACE FUNCTION retract_triple_analytics(ids TEXT[]) RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    po analytics_pair[];
    sp analytics_pair[];
BEGIN
    IF cardinality(ids) = 0 THEN
        RETURN;
    END IF;
    SELECT array_agg(DISTINCT ROW(t.predicate_id, t.object_id)::analytics_pair),
           array_agg(DISTINCT ROW(t.subject_id, t.predicate_id)::analytics_pair)
      INTO po, sp
      FROM triple t WHERE t.term_id = ANY(ids);
    LOCK TABLE triple_vault, triple_term, predicate_object, subject_predicate IN ROW EXCLUSIVE MODE;
    PERFORM lock_analytics(ids, coalesce(po, '{}'), coalesce(sp, '{}'));
    WITH gone AS (
        DELETE FROM triple_term tt USING triple t
         WHERE tt.term_id = ANY(ids) AND t.term_id = tt.term_id
        RETURNING t.subject_id, t.predicate_id, t.object_id, tt.total_position_count, tt.total_market_cap
    ), po_rows AS (
        UPDATE predicate_object p SET triple_count = p.triple_count - g.n,
               total_position_count = p.total_position_count - g.positions,
               total_market_cap = p.total_market_cap - g.cap
          FROM (SELECT predicate_id, object_id, count(*) AS n, sum(total_position_count) AS positions,
                       sum(total_market_cap) AS cap
                  FROM gone GROUP BY 1, 2) g
         WHERE (p.predicate_id, p.object_id) = (g.predicate_id, g.object_id)
    )
    UPDATE subject_predicate p SET triple_count = p.triple_count - g.n,
           total_position_count = p.total_position_count - g.positions,
           total_market_cap = p.total_market_cap - g.cap
      FROM (SELECT subject_id, predicate_id, count(*) AS n, sum(total_position_count) AS positions,
                   sum(total_market_cap) AS cap
              FROM gone GROUP BY 1, 2) g
     WHERE (p.subject_id, p.predicate_id) = (g.subject_id, g.predicate_id);
    DELETE FROM predicate_object p WHERE (p.predicate_id, p.object_id) IN (SELECT a, b FROM unnest(po))
       AND p.triple_count = 0;
    DELETE FROM subject_predicate p WHERE (p.subject_id, p.predicate_id) IN (SELECT a, b FROM unnest(sp))
       AND p.triple_count = 0;
    DELETE FROM triple_vault tv WHERE tv.term_id = ANY(ids);
END
$fn$;
