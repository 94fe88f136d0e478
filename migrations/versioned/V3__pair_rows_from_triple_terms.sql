-- From here on the analytics worker moves each predicate_object and subject_predicate row by
-- the change of every triple_term row it writes (refresh_triple_term in analytics.sql)
-- instead of recomputing the pair from all of its triples. A delta is only right against a
-- base that sums exactly the pair's triple_term rows, and the old recompute also counted
-- triples that had no triple_term row yet (created, not yet refreshed). So the pair rows are
-- summed once from the triple_term rows here; updates of those triples still in the
-- term_updates stream then add them as deltas, once.
--
-- EXCLUSIVE locks hold back workers until this commits. On a large database it reads every
-- triple_term row once; it runs while the engines and workers start, under the migration lock.

LOCK TABLE triple_term, predicate_object, subject_predicate IN EXCLUSIVE MODE;

DELETE FROM predicate_object;
INSERT INTO predicate_object (predicate_id, object_id, triple_count, total_position_count, total_market_cap)
SELECT t.predicate_id, t.object_id, count(*), sum(tt.total_position_count), sum(tt.total_market_cap)
  FROM triple_term tt JOIN triple t ON t.term_id = tt.term_id
 GROUP BY t.predicate_id, t.object_id;

DELETE FROM subject_predicate;
INSERT INTO subject_predicate (subject_id, predicate_id, triple_count, total_position_count, total_market_cap)
SELECT t.subject_id, t.predicate_id, count(*), sum(tt.total_position_count), sum(tt.total_market_cap)
  FROM triple_term tt JOIN triple t ON t.term_id = tt.term_id
 GROUP BY t.subject_id, t.predicate_id;
