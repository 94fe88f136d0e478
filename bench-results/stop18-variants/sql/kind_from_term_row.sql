-- Upper bound of a kind fast path: a term's kind read from its own row first (one probe the
-- upsert makes anyway), the atom / triple / vault probes only for new terms. NOT exact: a
-- term typed from its vault's vault_type keeps that type if a conflicting atom or triple
-- arrives later, so it only measures what skipping the probes could buy.
CREATE OR REPLACE FUNCTION cascade_terms(term_ids TEXT[]) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    WITH kinds AS MATERIALIZED (
        SELECT i.id,
               coalesce((SELECT t.type FROM term t WHERE t.id = i.id),
                        (SELECT 'Atom'::text FROM atom a WHERE a.term_id = i.id),
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
