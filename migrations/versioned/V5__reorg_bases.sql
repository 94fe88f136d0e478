-- Reorg bases (repeatable/retract.sql holds the logic; README -> Chain reorganizations).
-- A retraction must find, for each row it touches, the latest event left below the fork,
-- and the event log has no index by key (it would cost the backfill). A base remembers,
-- for one key of one kind, the latest event applied below a horizon block: a retraction
-- then searches the log only from the fork down to that horizon (a block range, which the
-- log's ordered key makes cheap), never the whole history. Live batches keep bases for the
-- keys they touch near their highest block; --backfill keeps none.

CREATE TABLE IF NOT EXISTS reorg_base (
    -- 1 deposit of a position, 2 redeem of a position, 3 any event of a vault, 4 price
    -- event of a vault, 5 AtomCreated of a term, 6 TripleCreated of a term.
    kind          SMALLINT NOT NULL,
    term_id       TEXT COLLATE "C" NOT NULL,
    -- '' and -1 for the kinds whose key has no account / curve.
    account_id    TEXT COLLATE "C" NOT NULL,
    curve_id      NUMERIC(78,0) NOT NULL,
    -- Every applied event of this key and kind below `horizon` is summed up in
    -- (block_number, log_index): the latest of them, NULL when there is none.
    horizon       BIGINT NOT NULL,
    block_number  BIGINT,
    log_index     BIGINT,
    -- The batch height at which pruning last found the key still busy.
    checked       BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (kind, term_id, account_id, curve_id)
);
CREATE INDEX IF NOT EXISTS reorg_base_horizon_idx ON reorg_base (horizon);

-- One event of a batch as the bases see it (see maintain_reorg_bases).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_type WHERE typname = 'reorg_touch') THEN
        CREATE TYPE reorg_touch AS (
            kind          SMALLINT,
            term_id       TEXT COLLATE "C",
            account_id    TEXT COLLATE "C",
            curve_id      NUMERIC,
            block_number  BIGINT,
            log_index     BIGINT
        );
    END IF;
END
$$;

-- Per reorg: keys its retraction searched below the fork without a base (each such search
-- can read the log down to block 0; live reorgs within the window have none).
ALTER TABLE reorg ADD COLUMN IF NOT EXISTS unbased_searches BIGINT NOT NULL DEFAULT 0;

-- Replaced by repeatable/retract.sql (rows rebuilt from the latest events left, found
-- through bases instead of recomputed by the reference views over the whole log).
DROP FUNCTION IF EXISTS recompute_atoms(TEXT[]);
DROP FUNCTION IF EXISTS recompute_triples(TEXT[]);
DROP FUNCTION IF EXISTS recompute_positions_and_vaults();
