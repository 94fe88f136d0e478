-- Plain-SQL experiment: does range partitioning of an event table by block help the insert
-- of a later batch at 20M stored rows? deposit-shaped rows, ordered key both ways.
\timing on
DROP TABLE IF EXISTS d_plain, d_part CASCADE;
CREATE TABLE d_plain (block_number bigint, log_index int, block_hash text, transaction_hash text,
  sender text, receiver text, term_id text, curve_id numeric, assets numeric, shares numeric,
  PRIMARY KEY (block_number, log_index, block_hash));
CREATE TABLE d_part (LIKE d_plain) PARTITION BY RANGE (block_number);
ALTER TABLE d_part ADD PRIMARY KEY (block_number, log_index, block_hash);
SELECT format('CREATE TABLE d_part_%s PARTITION OF d_part FOR VALUES FROM (%s) TO (%s)', i, i*1000000, (i+1)*1000000)
  FROM generate_series(0, 24) i \gexec
-- 20M rows: 4 logs per block over 5M blocks.
INSERT INTO d_plain SELECT b, l, md5(b::text), md5(b::text || 't'), '0x' || md5(l::text), '0x' || md5(b::text || 'r'),
  '0x' || md5((b % 5000)::text) || md5((b % 5000)::text), 1, b * 1000, b FROM generate_series(1::bigint, 5000000) b, generate_series(0, 3) l;
INSERT INTO d_part SELECT * FROM d_plain;
VACUUM ANALYZE d_plain; VACUUM ANALYZE d_part;
CHECKPOINT;
SELECT pg_size_pretty(pg_indexes_size('d_plain')) AS plain_index, pg_size_pretty(pg_relation_size('d_part_1_pkey')) AS one_partition_index;
CREATE TEMP TABLE batch AS SELECT b, l FROM generate_series(5000001::bigint, 5050000) b, generate_series(0, 3) l;
-- 200k later rows, as the staged insert does it.
SELECT pg_current_wal_lsn() AS w0 \gset
INSERT INTO d_plain SELECT b, l, md5(b::text), md5(b::text || 't'), '0x' || md5(l::text), '0x' || md5(b::text || 'r'),
  '0x' || md5((b % 5000)::text) || md5((b % 5000)::text), 1, b * 1000, b FROM batch ON CONFLICT DO NOTHING;
SELECT pg_size_pretty(pg_current_wal_lsn() - :'w0') AS plain_wal;
SELECT pg_current_wal_lsn() AS w1 \gset
INSERT INTO d_part SELECT b, l, md5(b::text), md5(b::text || 't'), '0x' || md5(l::text), '0x' || md5(b::text || 'r'),
  '0x' || md5((b % 5000)::text) || md5((b % 5000)::text), 1, b * 1000, b FROM batch ON CONFLICT DO NOTHING;
SELECT pg_size_pretty(pg_current_wal_lsn() - :'w1') AS part_wal;
-- and a second batch each, other order
CREATE TEMP TABLE batch2 AS SELECT b, l FROM generate_series(5050001::bigint, 5100000) b, generate_series(0, 3) l;
INSERT INTO d_part SELECT b, l, md5(b::text), md5(b::text || 't'), '0x' || md5(l::text), '0x' || md5(b::text || 'r'),
  '0x' || md5((b % 5000)::text) || md5((b % 5000)::text), 1, b * 1000, b FROM batch2 ON CONFLICT DO NOTHING;
INSERT INTO d_plain SELECT b, l, md5(b::text), md5(b::text || 't'), '0x' || md5(l::text), '0x' || md5(b::text || 'r'),
  '0x' || md5((b % 5000)::text) || md5((b % 5000)::text), 1, b * 1000, b FROM batch2 ON CONFLICT DO NOTHING;
-- A reorg-style range delete of the last 64 blocks' rows.
DELETE FROM d_plain WHERE block_number > 5099936;
DELETE FROM d_part WHERE block_number > 5099936;
-- Lookup of a redelivered row (the no-op path).
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO d_part SELECT b, l, md5(b::text), md5(b::text || 't'), '0x', '0x', '0x', 1, 1, 1 FROM batch2 LIMIT 1000 ON CONFLICT DO NOTHING;
EXPLAIN (ANALYZE, BUFFERS) INSERT INTO d_plain SELECT b, l, md5(b::text), md5(b::text || 't'), '0x', '0x', '0x', 1, 1, 1 FROM batch2 LIMIT 1000 ON CONFLICT DO NOTHING;
