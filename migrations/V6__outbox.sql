-- Transactional outbox for the analytics tier. Each batch inserts the term ids it touched
-- in its own transaction; after COMMIT the engine publishes them to the `term_updates`
-- stream and deletes what it published. A crash between commit and publish leaves the
-- rows here, and the next publish (or the next engine's start-up) sends them.
CREATE TABLE term_update_outbox (
    id           BIGSERIAL   PRIMARY KEY,
    term_ids     TEXT[]      NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);
