SELECT setseed(0.5);
SET rps.reorg_window = 0;
DO $$ BEGIN FOR i IN 0..(:blocks / 1000 - 1) LOOP PERFORM t_gen2(1 + i * 1000, 1 + (i + 1) * 1000, 'a', 10); END LOOP; END $$;
SET rps.reorg_window = 64;
DO $$ BEGIN FOR i IN 0..149 LOOP PERFORM t_gen2(:blocks + 1 + i * 2, :blocks + 3 + i * 2, 'a', 10); END LOOP; END $$;
SELECT count(*) AS bases FROM reorg_base;
