\timing on
SELECT setseed(0.9);
DO $$
DECLARE head INT := (SELECT max(block_number) FROM deposited_events) + 1; rid BIGINT; t0 TIMESTAMPTZ; n BIGINT;
BEGIN
  FOR r IN 1..5 LOOP
    INSERT INTO reorg (network, fork_block, depth, events_deleted, fingerprint, notice_ms, body)
    VALUES ('net', head - 3, 3, 0, 'f' || r, r, '{}') RETURNING id INTO rid;
    t0 := clock_timestamp();
    n := retract_events('net', head - 3, NULL, rid);
    RAISE WARNING 'retraction % from % : % events in % ms', r, head - 3, n, round(extract(epoch FROM clock_timestamp() - t0) * 1000);
    head := head - 3;
  END LOOP;
END $$;
SELECT sum(unbased_searches) AS unbased FROM reorg;
