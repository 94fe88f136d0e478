-- Reference views (schema snapshot): every level 1-3 table recomputed from the event log
-- alone, the seed's "before" design. They are the test oracle (maintained tables must equal them row for
-- row), the rollback path for readers, and the baseline in benchmarks. Column lists match
-- the maintained tables exactly so the two can be compared with EXCEPT ALL.

CREATE OR REPLACE VIEW snapshot.atom AS
SELECT DISTINCT ON (term_id)
       term_id,
       atom_wallet AS wallet_id,
       creator AS creator_id,
       atom_data_text AS data,
       CASE WHEN atom_data_text IS NULL THEN atom_data END AS raw_data,
       NULL::text AS type, NULL::text AS emoji, NULL::text AS label, NULL::text AS image,
       NULL::text AS value_id,
       'Pending'::text AS resolving_status,
       block_number AS last_event_block,
       log_index AS last_event_log_index
  FROM atom_created_events
 ORDER BY term_id, block_number DESC, log_index DESC;

CREATE OR REPLACE VIEW snapshot.triple AS
SELECT DISTINCT ON (term_id)
       term_id, creator AS creator_id, subject_id, predicate_id, object_id, counter_term_id,
       block_number AS last_event_block, log_index AS last_event_log_index
  FROM triple_created_events
 ORDER BY term_id, block_number DESC, log_index DESC;

-- Positions from the event log, of the given accounts and terms only (NULL: all):
-- snapshot.position is this with NULLs. Each scan filters itself, so a reorg's retraction
-- (reorg.sql) aggregates only the touched keys' events (an outer filter would not reach the
-- totals, which sit behind outer joins); for the view the NULL tests fold away, as the
-- function is inlined into the query that calls it (SQL, STABLE, one SELECT).
CREATE OR REPLACE FUNCTION snapshot.positions_of(accounts TEXT[], terms TEXT[])
RETURNS SETOF "position" LANGUAGE sql STABLE AS $$
WITH dep AS NOT MATERIALIZED (
    SELECT * FROM deposited_events
     WHERE (accounts IS NULL OR receiver = ANY(accounts)) AND (terms IS NULL OR term_id = ANY(terms))
), red AS NOT MATERIALIZED (
    SELECT * FROM redeemed_events
     WHERE (accounts IS NULL OR sender = ANY(accounts)) AND (terms IS NULL OR term_id = ANY(terms))
), ev AS (
    SELECT receiver AS account_id, term_id, curve_id, total_shares, block_number, log_index FROM dep
    UNION ALL
    SELECT sender, term_id, curve_id, total_shares, block_number, log_index FROM red
), latest AS (
    SELECT DISTINCT ON (account_id, term_id, curve_id) *
      FROM ev ORDER BY account_id, term_id, curve_id, block_number DESC, log_index DESC
), deposits AS (
    SELECT receiver AS account_id, term_id, curve_id, sum(assets_after_fees) AS total,
           (array_agg(block_number ORDER BY block_number DESC, log_index DESC))[1] AS block_number,
           (array_agg(log_index ORDER BY block_number DESC, log_index DESC))[1] AS log_index
      FROM dep GROUP BY 1, 2, 3
), redeems AS (
    SELECT sender AS account_id, term_id, curve_id, sum(assets) AS total,
           (array_agg(block_number ORDER BY block_number DESC, log_index DESC))[1] AS block_number,
           (array_agg(log_index ORDER BY block_number DESC, log_index DESC))[1] AS log_index
      FROM red GROUP BY 1, 2, 3
)
SELECT l.account_id, l.term_id, l.curve_id,
       l.total_shares AS shares,
       coalesce(d.total, 0)::numeric AS total_deposit_assets_after_total_fees,
       coalesce(r.total, 0)::numeric AS total_redeem_assets_for_receiver,
       l.block_number AS shares_block, l.log_index AS shares_log_index,
       d.block_number AS last_deposit_block, d.log_index AS last_deposit_log_index,
       r.block_number AS last_redeem_block, r.log_index AS last_redeem_log_index
  FROM latest l
  LEFT JOIN deposits d USING (account_id, term_id, curve_id)
  LEFT JOIN redeems r USING (account_id, term_id, curve_id)
$$;

CREATE OR REPLACE VIEW snapshot.position AS SELECT * FROM snapshot.positions_of(NULL, NULL);

-- Vaults from the event log, of the given terms only (NULL: all); as positions_of.
CREATE OR REPLACE FUNCTION snapshot.vaults_of(terms TEXT[])
RETURNS SETOF vault LANGUAGE sql STABLE AS $$
WITH ev AS (
    SELECT term_id, curve_id, vault_type, block_number, log_index FROM deposited_events
     WHERE terms IS NULL OR term_id = ANY(terms)
    UNION ALL
    SELECT term_id, curve_id, vault_type, block_number, log_index FROM redeemed_events
     WHERE terms IS NULL OR term_id = ANY(terms)
    UNION ALL
    SELECT term_id, curve_id, vault_type, block_number, log_index FROM share_price_changed_events
     WHERE terms IS NULL OR term_id = ANY(terms)
), latest AS (
    SELECT DISTINCT ON (term_id, curve_id) *
      FROM ev ORDER BY term_id, curve_id, block_number DESC, log_index DESC
), price AS (
    SELECT DISTINCT ON (term_id, curve_id) *
      FROM share_price_changed_events
     WHERE terms IS NULL OR term_id = ANY(terms)
     ORDER BY term_id, curve_id, block_number DESC, log_index DESC
), counts AS (
    SELECT term_id, curve_id, count(*) AS n
      FROM snapshot.positions_of(NULL, terms) WHERE shares > 0 GROUP BY 1, 2
)
SELECT l.term_id, l.curve_id,
       coalesce(p.total_shares, 0)::numeric(78,0) AS total_shares,
       coalesce(p.share_price, 0)::numeric(78,0) AS current_share_price,
       coalesce(p.total_assets, 0)::numeric(78,0) AS total_assets,
       coalesce(compute_market_cap(p.total_shares, p.share_price), 0) AS market_cap,
       coalesce(c.n, 0)::bigint AS position_count,
       vault_type_name(l.vault_type) AS vault_type,
       p.block_number AS last_price_block, p.log_index AS last_price_log_index,
       l.block_number AS last_event_block, l.log_index AS last_event_log_index
  FROM latest l
  LEFT JOIN price p USING (term_id, curve_id)
  LEFT JOIN counts c USING (term_id, curve_id)
$$;

CREATE OR REPLACE VIEW snapshot.vault AS SELECT * FROM snapshot.vaults_of(NULL);

CREATE OR REPLACE VIEW snapshot.term AS
WITH v AS MATERIALIZED (
    SELECT * FROM snapshot.vault
), ids AS (
    SELECT term_id AS id FROM snapshot.atom
    UNION SELECT term_id FROM snapshot.triple
    UNION SELECT counter_term_id FROM snapshot.triple
    UNION SELECT term_id FROM v
), latest_vault AS (
    SELECT DISTINCT ON (term_id) term_id AS id, vault_type
      FROM v ORDER BY term_id, last_event_block DESC, last_event_log_index DESC
), kinds AS (
    SELECT i.id,
           CASE WHEN i.id IN (SELECT term_id FROM snapshot.atom) THEN 'Atom'
                WHEN i.id IN (SELECT term_id FROM snapshot.triple) THEN 'Triple'
                WHEN i.id IN (SELECT counter_term_id FROM snapshot.triple) THEN 'CounterTriple'
                ELSE lv.vault_type
           END AS type
      FROM ids i LEFT JOIN latest_vault lv USING (id)
), totals AS (
    SELECT term_id AS id, sum(total_assets) AS total_assets, sum(market_cap) AS total_market_cap
      FROM v GROUP BY term_id
)
SELECT k.id, k.type,
       CASE WHEN k.type = 'Atom' THEN k.id END AS atom_id,
       CASE WHEN k.type IN ('Triple', 'CounterTriple') THEN k.id END AS triple_id,
       coalesce(s.total_assets, 0)::numeric AS total_assets,
       coalesce(s.total_market_cap, 0)::numeric AS total_market_cap
  FROM kinds k LEFT JOIN totals s USING (id);

-- Level 3 ------------------------------------------------------------------------------

CREATE OR REPLACE VIEW snapshot.triple_vault AS
WITH v AS MATERIALIZED (
    SELECT * FROM snapshot.vault
), curves AS (
    -- Every curve on which the triple's vault or its counter vault exists.
    SELECT t.term_id, t.counter_term_id, v.curve_id FROM snapshot.triple t JOIN v ON v.term_id = t.term_id
    UNION
    SELECT t.term_id, t.counter_term_id, v.curve_id FROM snapshot.triple t JOIN v ON v.term_id = t.counter_term_id
)
SELECT c.term_id, c.counter_term_id, c.curve_id,
       (coalesce(pv.total_shares, 0) + coalesce(cv.total_shares, 0))::numeric AS total_shares,
       (coalesce(pv.total_assets, 0) + coalesce(cv.total_assets, 0))::numeric AS total_assets,
       (coalesce(pv.position_count, 0) + coalesce(cv.position_count, 0))::bigint AS position_count,
       (coalesce(pv.market_cap, 0) + coalesce(cv.market_cap, 0))::numeric AS market_cap
  FROM curves c
  LEFT JOIN v pv ON pv.term_id = c.term_id AND pv.curve_id = c.curve_id
  LEFT JOIN v cv ON cv.term_id = c.counter_term_id AND cv.curve_id = c.curve_id;

CREATE OR REPLACE VIEW snapshot.triple_term AS
SELECT t.term_id, t.counter_term_id,
       coalesce(sum(tv.total_assets), 0)::numeric AS total_assets,
       coalesce(sum(tv.market_cap), 0)::numeric AS total_market_cap,
       coalesce(sum(tv.position_count), 0)::bigint AS total_position_count
  FROM snapshot.triple t
  LEFT JOIN snapshot.triple_vault tv ON tv.term_id = t.term_id
 GROUP BY t.term_id, t.counter_term_id;

CREATE OR REPLACE VIEW snapshot.predicate_object AS
SELECT t.predicate_id, t.object_id,
       count(*)::bigint AS triple_count,
       coalesce(sum(tt.total_position_count), 0)::bigint AS total_position_count,
       coalesce(sum(tt.total_market_cap), 0)::numeric AS total_market_cap
  FROM snapshot.triple t
  LEFT JOIN snapshot.triple_term tt ON tt.term_id = t.term_id
 GROUP BY t.predicate_id, t.object_id;

CREATE OR REPLACE VIEW snapshot.subject_predicate AS
SELECT t.subject_id, t.predicate_id,
       count(*)::bigint AS triple_count,
       coalesce(sum(tt.total_position_count), 0)::bigint AS total_position_count,
       coalesce(sum(tt.total_market_cap), 0)::numeric AS total_market_cap
  FROM snapshot.triple t
  LEFT JOIN snapshot.triple_term tt ON tt.term_id = t.term_id
 GROUP BY t.subject_id, t.predicate_id;

-- Rows that differ between a maintained table and its reference view, each way.
-- 0 / 0 means the table is exactly the full recompute.
CREATE OR REPLACE FUNCTION snapshot.compare(table_name TEXT,
                                 OUT only_in_table BIGINT, OUT only_in_view BIGINT)
LANGUAGE plpgsql AS $$
BEGIN
    EXECUTE format('SELECT count(*) FROM (SELECT * FROM public.%1$I EXCEPT ALL SELECT * FROM snapshot.%1$I) d',
                   table_name) INTO only_in_table;
    EXECUTE format('SELECT count(*) FROM (SELECT * FROM snapshot.%1$I EXCEPT ALL SELECT * FROM public.%1$I) d',
                   table_name) INTO only_in_view;
END
$$;
