SELECT setseed(:seed);
SET rps.reorg_window = :win;
DO $$
DECLARE
  head INT := 1; rid BIGINT; depth INT; bad BIGINT; searches BIGINT := 0; total_searches BIGINT := 0; n BIGINT;
  step INT;
BEGIN
  FOR round IN 1..12 LOOP
    -- some live batches
    FOR i IN 1..(5 + (random()*10)::int) LOOP
      step := 1 + (random()*6)::int;
      PERFORM t_gen(head, head + step, 'a' || round || '-', 1 + (random()*5)::int);
      head := head + step;
    END LOOP;
    depth := 1 + (random() * least(head - 2, CASE WHEN round % 4 = 0 THEN 150 ELSE 63 END))::int;
    INSERT INTO reorg (network, fork_block, depth, events_deleted, fingerprint, notice_ms, body)
    VALUES ('net', head - depth, depth, 0, 'f' || round, round, '{}') RETURNING id INTO rid;
    n := retract_events('net', head - depth, NULL, rid);
    SELECT unbased_searches INTO searches FROM reorg WHERE id = rid;
    total_searches := total_searches + searches;
    SELECT sum(only_in_table + only_in_view) INTO bad FROM t_check();
    RAISE WARNING 'round % head % depth % retracted % unbased % mismatches %', round, head, depth, n, searches, bad;
    head := head - depth;   -- the new chain continues from the fork
  END LOOP;
END $$;
SELECT count(*) AS bases FROM reorg_base;
