-- Chain reorganizations: rindexer's reorg notices, the per-stream barrier they set, and the
-- retraction of orphaned events (README -> Chain reorganizations has the model).
--
-- Locking. Every batch transaction takes the reorg lock in shared mode (reorg_screening)
-- before it writes events; a notice takes it exclusively (record_reorg_notice). So a
-- retraction sees every event written before it, and every batch after it sees the reorg:
-- an orphaned event is either deleted by the retraction or never written.

CREATE OR REPLACE FUNCTION reorg_lock_key() RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$ SELECT 7342001000::bigint $$;

-- How far apart (stream entry milliseconds) the copies of one notice can be: rindexer
-- publishes them to every stream concurrently, then waits for them all.
CREATE OR REPLACE FUNCTION reorg_copy_spread_ms() RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$ SELECT 10000::bigint $$;

-- What a batch needs to tell orphaned events from the others, under the shared lock (held
-- until the batch's transaction ends), in one round trip:
--  * kind 'barrier', one row per (reorg, stream of the batch): an event of that network
--    and stream at or above fork_block whose stream entry id is below (barrier_ms,
--    barrier_seq) precedes its stream's copy of the notice, so it belongs to the old chain.
--    The barrier is the stream's first copy; while the stream has delivered none, the
--    notice's time (an entry added before any copy was published is old; one added after
--    it stays, and goes with the retraction that the stream's own copy runs if it turns
--    out to precede it). Only reorgs that can concern the batch are listed: at or
--    below its highest block, noticed no earlier than its oldest entry minus the spread.
--  * kind 'retracted', one row per orphaned block in the batch's block range;
--  * kind 'passed', the older reorgs (every entry of the batch was added after them) whose
--    fork_block is in (min_block + 1, max_block + 1], and kind 'baseline', per network the
--    latest older reorg at or below min_block + 1: with the barriers, what ranks the
--    batch's blocks near a fork (see stored_blocks).
CREATE OR REPLACE FUNCTION reorg_screening(streams TEXT[], oldest_entry_ms BIGINT, min_block BIGINT, max_block BIGINT)
RETURNS TABLE (kind TEXT, reorg_id BIGINT, network TEXT, block_number BIGINT, block_hash TEXT, stream TEXT,
               barrier_ms BIGINT, barrier_seq BIGINT, notice_ms BIGINT)
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_advisory_xact_lock_shared(reorg_lock_key());
    -- Nearly every batch: no recent reorg and no orphaned block in range (two index probes).
    IF NOT EXISTS (SELECT 1 FROM reorg r WHERE r.notice_ms >= oldest_entry_ms - reorg_copy_spread_ms()
                                          AND r.fork_block <= max_block + 1)
       AND NOT EXISTS (SELECT 1 FROM retracted_block b WHERE b.block_number BETWEEN min_block AND max_block) THEN
        RETURN;
    END IF;
    RETURN QUERY
    SELECT 'barrier', r.id, r.network::text, r.fork_block, NULL::text, s.stream,
           coalesce(c.entry_ms, r.notice_ms), coalesce(c.entry_seq, 0), r.notice_ms
      FROM reorg r
     CROSS JOIN unnest(streams) AS s(stream)
      LEFT JOIN LATERAL (SELECT rc.entry_ms, rc.entry_seq FROM reorg_copy rc
                          WHERE rc.reorg_id = r.id AND rc.stream = s.stream
                          ORDER BY rc.entry_ms, rc.entry_seq LIMIT 1) c ON true
     WHERE r.notice_ms >= oldest_entry_ms - reorg_copy_spread_ms()
       AND r.fork_block <= max_block + 1
    UNION ALL
    SELECT 'retracted', b.reorg_id, b.network::text, b.block_number, b.block_hash::text, NULL, NULL, NULL, NULL
      FROM retracted_block b
     WHERE b.block_number BETWEEN min_block AND max_block
    UNION ALL
    SELECT 'passed', r.id, r.network::text, r.fork_block, NULL, NULL, NULL, NULL, r.notice_ms
      FROM reorg r
     WHERE r.notice_ms < oldest_entry_ms - reorg_copy_spread_ms()
       AND r.fork_block > min_block + 1 AND r.fork_block <= max_block + 1
    UNION ALL
    SELECT 'baseline', max(r.id), r.network::text, NULL, NULL, NULL, NULL, NULL, max(r.notice_ms)
      FROM reorg r
     WHERE r.notice_ms < oldest_entry_ms - reorg_copy_spread_ms()
       AND r.fork_block <= min_block + 1
     GROUP BY r.network;
END
$$;

-- Blocks a batch found orphaned on arrival (its events were never applied): recorded so
-- that a later copy of them is not applied either.
CREATE OR REPLACE FUNCTION record_orphaned_blocks(networks TEXT[], blocks BIGINT[], hashes TEXT[], reorgs BIGINT[])
RETURNS void LANGUAGE sql AS $$
    INSERT INTO retracted_block (network, block_number, block_hash, reorg_id)
    SELECT * FROM unnest(networks, blocks, hashes, reorgs)
    ON CONFLICT DO NOTHING
$$;

-- One copy of a notice, read from `stream` at entry (entry_ms, entry_seq). Copies are the
-- same reorg when their fingerprints match and they were published within
-- reorg_copy_spread_ms of each other; a redelivered copy (same entry) changes nothing. Every
-- other copy runs the reorg's retraction (again): the first one retracts the network's
-- events from the fork on that precede their stream's copy (or, for a stream with no copy
-- yet, the notice), and each stream's first copy then takes the events of its stream
-- that the notice's time could not place.
CREATE OR REPLACE FUNCTION record_reorg_notice(net TEXT, stream TEXT, entry_ms BIGINT, entry_seq BIGINT,
                                               stream_key INT, fork BIGINT, depth BIGINT,
                                               events_deleted BIGINT, print TEXT, body JSONB)
RETURNS TABLE (reorg_id BIGINT, is_new BOOLEAN, events_retracted BIGINT) LANGUAGE plpgsql AS $$
DECLARE
    rid BIGINT;
    retracted BIGINT := 0;
    fresh BOOLEAN := false;
    stale TEXT;
    orphan RECORD;
BEGIN
    PERFORM pg_advisory_xact_lock(reorg_lock_key());
    SELECT c.reorg_id INTO rid FROM reorg_copy c
     WHERE c.stream = record_reorg_notice.stream AND c.entry_ms = record_reorg_notice.entry_ms
       AND c.entry_seq = record_reorg_notice.entry_seq;
    IF FOUND THEN
        RETURN QUERY SELECT rid, false, 0::bigint;
        RETURN;
    END IF;
    SELECT r.id INTO rid FROM reorg r
     WHERE r.network = net AND r.fingerprint = print
       AND abs(r.notice_ms - record_reorg_notice.entry_ms) <= reorg_copy_spread_ms()
     ORDER BY abs(r.notice_ms - record_reorg_notice.entry_ms) LIMIT 1;
    IF NOT FOUND THEN
        INSERT INTO reorg (network, fork_block, depth, events_deleted, fingerprint, notice_ms, body)
        VALUES (net, fork, depth, events_deleted, print, record_reorg_notice.entry_ms, body)
        RETURNING reorg.id INTO rid;
        fresh := true;
    END IF;
    INSERT INTO reorg_copy (stream, entry_ms, entry_seq, reorg_id, stream_key, entry)
    VALUES (stream, entry_ms, entry_seq, rid, stream_key, packed_entry(entry_ms, entry_seq));
    SELECT r.fork_block INTO fork FROM reorg r WHERE r.id = rid;
    retracted := retract_events(net, fork, NULL, rid);
    -- fork_block can be one too high: a block just below it held under two hashes keeps the
    -- one published after the notice. Screening settles this as blocks arrive; a block that
    -- arrived while this notice was still unrecorded (another engine held it) is settled here.
    FOR stale IN
        SELECT b.block_hash FROM stored_blocks(net, ARRAY[fork - 1]) b
         WHERE b.rank < (SELECT max(x.rank) FROM stored_blocks(net, ARRAY[fork - 1]) x)
    LOOP
        retracted := retracted + retract_events(net, fork - 1, stale, rid);
    END LOOP;
    -- A block is orphaned whole: a copy of one of its events that came after its stream's
    -- copy of the notice (a duplicate another engine applied early) goes too.
    FOR orphan IN
        SELECT s.block_number, s.block_hash
          FROM stored_blocks(net, ARRAY(SELECT DISTINCT b.block_number FROM retracted_block b
                                         WHERE b.reorg_id = rid AND b.network = net)) s
          JOIN retracted_block b ON (b.block_number, b.block_hash, b.network) = (s.block_number, s.block_hash, net)
    LOOP
        retracted := retracted + retract_events(net, orphan.block_number, orphan.block_hash, rid);
    END LOOP;
    UPDATE reorg r SET events_retracted = r.events_retracted + retracted WHERE r.id = rid;
    RETURN QUERY SELECT rid, fresh, retracted;
END
$$;

-- A stream entry id packed as the event log keeps it (engine: event::Position).
CREATE OR REPLACE FUNCTION packed_entry(ms BIGINT, seq BIGINT) RETURNS BIGINT
LANGUAGE sql IMMUTABLE AS $$ SELECT (ms << 22) | least(greatest(seq, 0), 4194303) $$;

-- Whether an event read at (stream_key, entry) precedes its stream's copy of reorg `rid`'s
-- notice, or, its stream having none recorded, the notice itself. An event logged without
-- a position precedes every notice.
CREATE OR REPLACE FUNCTION precedes_reorg(key INT, entry BIGINT, rid BIGINT) RETURNS BOOLEAN
LANGUAGE sql STABLE AS $$
    SELECT entry IS NULL
        OR entry < coalesce((SELECT min(c.entry) FROM reorg_copy c WHERE c.reorg_id = rid AND c.stream_key = key),
                            (SELECT packed_entry(r.notice_ms, 0) FROM reorg r WHERE r.id = rid))
$$;

-- Retract the network's events from block `from_block` on that precede their stream's copy
-- of reorg `reorg_no`'s notice (or, given `only_hash`, the events of that one block at
-- `from_block`), and return every level 1-2 row they touched to
-- what the remaining log implies; level 3 follows through the outbox. Returns the number
-- of events retracted. Runs under the exclusive reorg lock, so no batch writes meanwhile.
--
-- Level 1 rows are recomputed from the remaining log with the reference definitions
-- (snapshot.sql) restricted to the touched keys: exact whatever the depth, but a filtered
-- scan of the event tables (the log has no index by term). vault.position_count moves by
-- the positions that crossed shares > 0, as in the merges.
CREATE OR REPLACE FUNCTION retract_events(net TEXT, from_block BIGINT, only_hash TEXT, reorg_no BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $fn$
DECLARE
    n BIGINT;
    to_block BIGINT := CASE WHEN only_hash IS NULL THEN 9223372036854775807 ELSE from_block END;
    terms TEXT[];
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS retracted_events (
        kind TEXT, block_number BIGINT, block_hash TEXT, term_id TEXT, counter_term_id TEXT,
        account_id TEXT, curve_id NUMERIC) ON COMMIT DROP;
    TRUNCATE pg_temp.retracted_events;
    WITH a AS (
        DELETE FROM atom_created_events e WHERE e.network = net AND e.block_number BETWEEN from_block AND to_block
           AND (CASE WHEN only_hash IS NULL THEN precedes_reorg(e.stream_key, e.stream_entry, reorg_no)
                     ELSE e.block_hash = only_hash END)
        RETURNING 'atom' AS kind, e.block_number, e.block_hash, e.term_id, NULL::text AS counter_term_id,
                  NULL::text AS account_id, NULL::numeric AS curve_id
    ), t AS (
        DELETE FROM triple_created_events e WHERE e.network = net AND e.block_number BETWEEN from_block AND to_block
           AND (CASE WHEN only_hash IS NULL THEN precedes_reorg(e.stream_key, e.stream_entry, reorg_no)
                     ELSE e.block_hash = only_hash END)
        RETURNING 'triple', e.block_number, e.block_hash, e.term_id, e.counter_term_id, NULL::text, NULL::numeric
    ), d AS (
        DELETE FROM deposited_events e WHERE e.network = net AND e.block_number BETWEEN from_block AND to_block
           AND (CASE WHEN only_hash IS NULL THEN precedes_reorg(e.stream_key, e.stream_entry, reorg_no)
                     ELSE e.block_hash = only_hash END)
        RETURNING 'position', e.block_number, e.block_hash, e.term_id, NULL::text, e.receiver, e.curve_id
    ), r AS (
        DELETE FROM redeemed_events e WHERE e.network = net AND e.block_number BETWEEN from_block AND to_block
           AND (CASE WHEN only_hash IS NULL THEN precedes_reorg(e.stream_key, e.stream_entry, reorg_no)
                     ELSE e.block_hash = only_hash END)
        RETURNING 'position', e.block_number, e.block_hash, e.term_id, NULL::text, e.sender, e.curve_id
    ), s AS (
        DELETE FROM share_price_changed_events e WHERE e.network = net AND e.block_number BETWEEN from_block AND to_block
           AND (CASE WHEN only_hash IS NULL THEN precedes_reorg(e.stream_key, e.stream_entry, reorg_no)
                     ELSE e.block_hash = only_hash END)
        RETURNING 'vault', e.block_number, e.block_hash, e.term_id, NULL::text, NULL::text, e.curve_id
    ), g AS (
        DELETE FROM generic_events e WHERE e.network = net AND e.block_number BETWEEN from_block AND to_block
           AND (CASE WHEN only_hash IS NULL THEN precedes_reorg(e.stream_key, e.stream_entry, reorg_no)
                     ELSE e.block_hash = only_hash END)
        RETURNING 'generic', e.block_number, e.block_hash, NULL::text, NULL::text, NULL::text, NULL::numeric
    )
    INSERT INTO pg_temp.retracted_events
    SELECT * FROM a UNION ALL SELECT * FROM t UNION ALL SELECT * FROM d
    UNION ALL SELECT * FROM r UNION ALL SELECT * FROM s UNION ALL SELECT * FROM g;
    GET DIAGNOSTICS n = ROW_COUNT;

    INSERT INTO retracted_block (network, block_number, block_hash, reorg_id)
    SELECT DISTINCT net, e.block_number, e.block_hash, reorg_no FROM pg_temp.retracted_events e
    ON CONFLICT DO NOTHING;
    IF n = 0 THEN
        RETURN 0;
    END IF;

    PERFORM retract_triple_analytics(ARRAY(SELECT DISTINCT e.term_id FROM pg_temp.retracted_events e
                                            WHERE e.kind = 'triple'));
    PERFORM recompute_atoms(ARRAY(SELECT DISTINCT e.term_id FROM pg_temp.retracted_events e WHERE e.kind = 'atom'));
    PERFORM recompute_triples(ARRAY(SELECT DISTINCT e.term_id FROM pg_temp.retracted_events e WHERE e.kind = 'triple'));
    PERFORM recompute_positions_and_vaults();

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

CREATE OR REPLACE FUNCTION recompute_atoms(ids TEXT[]) RETURNS void LANGUAGE sql AS $$
    DELETE FROM atom WHERE term_id = ANY(ids);
    INSERT INTO atom SELECT * FROM snapshot.atom WHERE term_id = ANY(ids);
$$;

CREATE OR REPLACE FUNCTION recompute_triples(ids TEXT[]) RETURNS void LANGUAGE sql AS $$
    DELETE FROM triple WHERE term_id = ANY(ids);
    INSERT INTO triple SELECT * FROM snapshot.triple WHERE term_id = ANY(ids);
$$;

-- The positions and vaults named by pg_temp.retracted_events, recomputed.
CREATE OR REPLACE FUNCTION recompute_positions_and_vaults() RETURNS void LANGUAGE plpgsql AS $fn$
DECLARE
    accounts TEXT[];
    terms TEXT[];
BEGIN
    CREATE TEMP TABLE IF NOT EXISTS retracted_positions ON COMMIT DROP AS
        SELECT account_id, term_id, curve_id, 0 AS was_active FROM position WITH NO DATA;
    TRUNCATE pg_temp.retracted_positions;
    INSERT INTO pg_temp.retracted_positions
    SELECT k.account_id, k.term_id, k.curve_id, coalesce((p.shares > 0)::int, 0)
      FROM (SELECT DISTINCT account_id, term_id, curve_id FROM pg_temp.retracted_events
             WHERE kind = 'position') k
      LEFT JOIN position p USING (account_id, term_id, curve_id);

    DELETE FROM position p USING pg_temp.retracted_positions k
     WHERE (p.account_id, p.term_id, p.curve_id) = (k.account_id, k.term_id, k.curve_id);
    -- The keys go in as arrays, which filter every scan of the reference definition, so
    -- only the touched accounts' and terms' events are aggregated.
    accounts := ARRAY(SELECT DISTINCT account_id FROM pg_temp.retracted_positions);
    terms := ARRAY(SELECT DISTINCT term_id FROM pg_temp.retracted_events WHERE kind IN ('position', 'vault'));
    INSERT INTO position
    SELECT s.* FROM snapshot.positions_of(accounts, terms) s
     WHERE (s.account_id, s.term_id, s.curve_id) IN (SELECT account_id, term_id, curve_id
                                                        FROM pg_temp.retracted_positions);

    -- Each vault's count before, moved by its positions that crossed shares > 0.
    CREATE TEMP TABLE IF NOT EXISTS retracted_vaults ON COMMIT DROP AS
        SELECT term_id, curve_id, position_count FROM vault WITH NO DATA;
    TRUNCATE pg_temp.retracted_vaults;
    INSERT INTO pg_temp.retracted_vaults
    SELECT k.term_id, k.curve_id, coalesce(v.position_count, 0) + coalesce(m.delta, 0)
      FROM (SELECT DISTINCT term_id, curve_id FROM pg_temp.retracted_events
             WHERE kind IN ('position', 'vault')) k
      LEFT JOIN vault v USING (term_id, curve_id)
      LEFT JOIN (SELECT r.term_id, r.curve_id, sum(coalesce((p.shares > 0)::int, 0) - r.was_active) AS delta
                   FROM pg_temp.retracted_positions r
                   LEFT JOIN position p USING (account_id, term_id, curve_id)
                  GROUP BY r.term_id, r.curve_id) m USING (term_id, curve_id);

    DELETE FROM vault v USING pg_temp.retracted_vaults k
     WHERE (v.term_id, v.curve_id) = (k.term_id, k.curve_id);
    INSERT INTO vault (term_id, curve_id, total_shares, current_share_price, total_assets, market_cap,
                       position_count, vault_type, last_price_block, last_price_log_index,
                       last_event_block, last_event_log_index)
    SELECT s.term_id, s.curve_id, s.total_shares, s.current_share_price, s.total_assets, s.market_cap,
           k.position_count, s.vault_type, s.last_price_block, s.last_price_log_index,
           s.last_event_block, s.last_event_log_index
      FROM snapshot.vaults_of(terms) s
      JOIN pg_temp.retracted_vaults k USING (term_id, curve_id);
END
$fn$;

-- Level 3 of triples that lose their TripleCreated events: take each one's triple_term row
-- out of its pair rows (a pair row left with no triple goes), and delete its triple_term
-- and triple_vault rows. The outbox then refreshes the triples that still exist, as new
-- ones. Needed here because the pair deltas of refresh_triple_term (analytics.sql) read
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

-- Every logged event's key, network and stream position, whatever its table. Conditions on
-- these columns reach each table's own scan (UNION ALL), so a lookup by block stays an index
-- probe per table.
CREATE OR REPLACE VIEW logged_events AS
SELECT block_number, log_index, block_hash, network, stream_key, stream_entry FROM atom_created_events
UNION ALL
SELECT block_number, log_index, block_hash, network, stream_key, stream_entry FROM triple_created_events
UNION ALL
SELECT block_number, log_index, block_hash, network, stream_key, stream_entry FROM deposited_events
UNION ALL
SELECT block_number, log_index, block_hash, network, stream_key, stream_entry FROM redeemed_events
UNION ALL
SELECT block_number, log_index, block_hash, network, stream_key, stream_entry FROM share_price_changed_events
UNION ALL
SELECT block_number, log_index, block_hash, network, stream_key, stream_entry FROM generic_events;

-- The block hashes the log holds at the given heights of a network, each with its rank: the
-- notice time of the latest reorg covering its height (fork_block at most one above it)
-- that its events' streams had passed when they were read (from the positions logged with
-- them; 0 for none), over its earliest-ranked event (a block is published once; a later copy
-- of its events is a duplicate and must not make it look newer). Of two blocks at one
-- height, the higher rank was published after a later reorg: it is the newer chain. Computed from positions, not remembered, so it does
-- not depend on the order in which engines recorded the notices. Each height is locked
-- first (in order, until the transaction ends): two transactions writing two hashes of one
-- height would otherwise each check before the other commits, and both blocks would stay.
CREATE OR REPLACE FUNCTION stored_blocks(net TEXT, heights BIGINT[])
RETURNS TABLE (block_number BIGINT, block_hash TEXT, rank BIGINT) LANGUAGE plpgsql AS $fn$
DECLARE
    h BIGINT;
BEGIN
    FOR h IN SELECT DISTINCT x FROM unnest(heights) AS x ORDER BY 1 LOOP
        PERFORM pg_advisory_xact_lock(730010, hashtext(net || '/' || h));
    END LOOP;
    RETURN QUERY
    SELECT b.block_number, b.block_hash::text, min(coalesce(passed.notice_ms, 0))::bigint
      FROM logged_events b
      LEFT JOIN LATERAL (SELECT r.notice_ms FROM reorg r
                          WHERE r.network = b.network AND r.fork_block <= b.block_number + 1
                            AND NOT precedes_reorg(b.stream_key, b.stream_entry, r.id)
                          ORDER BY r.notice_ms DESC LIMIT 1) passed ON true
     WHERE b.block_number = ANY(heights) AND b.network = net
     GROUP BY b.block_number, b.block_hash;
END
$fn$;

-- Retract one stored block proven orphaned by a newer block at its height (a notice's
-- fork_block one too high leaves it behind), under the exclusive reorg lock.
CREATE OR REPLACE FUNCTION retract_orphaned_block(net TEXT, height BIGINT, hash TEXT, reorg_no BIGINT)
RETURNS BIGINT LANGUAGE plpgsql AS $$
DECLARE
    n BIGINT;
BEGIN
    PERFORM pg_advisory_xact_lock(reorg_lock_key());
    n := retract_events(net, height, hash, reorg_no);
    UPDATE reorg r SET events_retracted = r.events_retracted + n WHERE r.id = reorg_no;
    RETURN n;
END
$$;
