-- Scale probe: :events events backfilled (no bases), then live batches with bases, then
-- five single-block retractions near the head, timed; run once with retract.sql (new) and
-- once with the old reorg.sql functions on a copy.
CREATE OR REPLACE FUNCTION t_gen2(lo INT, hi INT, hash TEXT, density INT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DROP TABLE IF EXISTS g; CREATE TEMP TABLE g (b INT, li INT, k INT, term INT, acct INT, curve INT, amt NUMERIC);
  INSERT INTO g SELECT b, li, (random()*9)::int, (random()*30000)::int, (random()*20000)::int, 1 + (random())::int, (random()*1000)::int
    FROM generate_series(lo, hi - 1) b, generate_series(1, density) li;
  INSERT INTO atom_created_events SELECT 'tx', li, b, hash || b, 'addr', 'net', 0, NULL, 'c' || k, t_term(term), 'w' || li, 'ab', 'data' || b || '-' || li FROM g WHERE k = 0;
  INSERT INTO triple_created_events SELECT 'tx', li, b, hash || b, 'addr', 'net', 0, NULL, 'c' || k, t_term(term), t_term(term+1), t_term(term+2), t_term(term+3), t_term(term + 100000) FROM g WHERE k = 1;
  INSERT INTO deposited_events SELECT 'tx', li, b, hash || b, 'addr', 'net', 0, NULL, 's', 'acct' || acct, t_term(term), curve, amt, amt - 1, amt, amt * b, (term % 3)::smallint FROM g WHERE k IN (2, 3, 4);
  INSERT INTO redeemed_events SELECT 'tx', li, b, hash || b, 'addr', 'net', 0, NULL, 'acct' || acct, 'r', t_term(term), curve, amt, (amt * b) % 7, amt, 1, (term % 3)::smallint FROM g WHERE k IN (5, 6);
  INSERT INTO share_price_changed_events SELECT 'tx', li, b, hash || b, 'addr', 'net', 0, NULL, t_term(term), curve, amt * 1000000000000, amt + b, amt * 3, (term % 3)::smallint FROM g WHERE k IN (7, 8);
END $$;
