CREATE OR REPLACE FUNCTION t_term(i INT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS $$ SELECT md5('term' || i) || md5('t' || i) $$;
CREATE OR REPLACE FUNCTION t_gen(lo INT, hi INT, hash TEXT, density INT) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  DROP TABLE IF EXISTS g; CREATE TEMP TABLE g (b INT, li INT, k INT, term INT, acct INT, curve INT, amt NUMERIC);

  INSERT INTO g SELECT b, li, (random()*9)::int, (random()*25)::int, (random()*8)::int, 1 + (random())::int, (random()*1000)::int
    FROM generate_series(lo, hi - 1) b, generate_series(1, density) li;
  INSERT INTO atom_created_events SELECT 'tx', li, b, hash || b, 'addr', 'net', 0, NULL, 'c' || k, t_term(term), 'w' || li, 'ab', 'data' || b || '-' || li
    FROM g WHERE k = 0;
  INSERT INTO triple_created_events SELECT 'tx', li, b, hash || b, 'addr', 'net', 0, NULL, 'c' || k, t_term(term), t_term(term+1), t_term(term+2), t_term(term+3), t_term(term + 100)
    FROM g WHERE k = 1;
  INSERT INTO deposited_events SELECT 'tx', li, b, hash || b, 'addr', 'net', 0, NULL, 's', 'acct' || acct, t_term(term), curve, amt, amt - 1, amt, amt * b, (term % 3)::smallint
    FROM g WHERE k IN (2, 3, 4);
  INSERT INTO redeemed_events SELECT 'tx', li, b, hash || b, 'addr', 'net', 0, NULL, 'acct' || acct, 'r', t_term(term), curve, amt, (amt * b) % 7, amt, 1, (term % 3)::smallint
    FROM g WHERE k IN (5, 6);
  INSERT INTO share_price_changed_events SELECT 'tx', li, b, hash || b, 'addr', 'net', 0, NULL, t_term(term), curve, amt * 1000000000000, amt + b, amt * 3, (term % 3)::smallint
    FROM g WHERE k IN (7, 8);
END
$$;
CREATE OR REPLACE FUNCTION t_check() RETURNS TABLE (tbl TEXT, only_in_table BIGINT, only_in_view BIGINT) LANGUAGE plpgsql AS $$
DECLARE t TEXT;
BEGIN
  PERFORM cascade_terms(ARRAY(SELECT id FROM snapshot.term));
  DELETE FROM term x WHERE NOT EXISTS (SELECT 1 FROM snapshot.term s WHERE s.id = x.id);
  FOREACH t IN ARRAY ARRAY['atom','triple','position','vault','term'] LOOP
    RETURN QUERY SELECT t, c.only_in_table, c.only_in_view FROM snapshot.compare(t) c;
  END LOOP;
END $$;
