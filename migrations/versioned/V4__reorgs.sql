-- Chain reorganizations (repeatable/reorg.sql holds the logic; README -> Chain
-- reorganizations the model). Idempotent, so that a test can replay V3 after it.

-- One row per reorg, whichever stream's copy of its notice came first.
CREATE TABLE IF NOT EXISTS reorg (
    id                BIGSERIAL PRIMARY KEY,
    network           TEXT COLLATE "C" NOT NULL,
    fork_block        BIGINT NOT NULL,
    depth             BIGINT NOT NULL,
    events_deleted    BIGINT NOT NULL,
    -- Identifies the notice's copies: rindexer sends the same notice to every stream of
    -- the network, once per indexed event.
    fingerprint       TEXT NOT NULL,
    -- Milliseconds part of the first copy's stream entry id (Redis's clock when rindexer
    -- published it).
    notice_ms         BIGINT NOT NULL,
    body              JSONB NOT NULL,
    events_retracted  BIGINT NOT NULL DEFAULT 0,
    applied_at        TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS reorg_notice_ms_idx ON reorg (notice_ms);

-- Every copy of a notice read, by its stream entry: a redelivered copy is recognised, and
-- a stream's copy is the barrier between its old-chain and new-chain events. stream_key
-- and entry are the stream and entry id as the event log keeps them (below).
CREATE TABLE IF NOT EXISTS reorg_copy (
    stream      TEXT COLLATE "C" NOT NULL,
    entry_ms    BIGINT NOT NULL,
    entry_seq   BIGINT NOT NULL,
    reorg_id    BIGINT NOT NULL REFERENCES reorg (id),
    stream_key  INT NOT NULL,
    entry       BIGINT NOT NULL,
    PRIMARY KEY (stream, entry_ms, entry_seq)
);
CREATE INDEX IF NOT EXISTS reorg_copy_reorg_idx ON reorg_copy (reorg_id, stream_key, entry);

-- Where each event was read: a 32-bit key of its stream (keccak256 of the name) and its
-- entry id packed as ms << 22 | seq. A retraction takes only the events that precede their
-- own stream's copy of the notice, whichever engine applied them first. NULL for events
-- logged before this migration (treated as preceding every notice).
ALTER TABLE atom_created_events ADD COLUMN IF NOT EXISTS stream_key INT, ADD COLUMN IF NOT EXISTS stream_entry BIGINT;
ALTER TABLE triple_created_events ADD COLUMN IF NOT EXISTS stream_key INT, ADD COLUMN IF NOT EXISTS stream_entry BIGINT;
ALTER TABLE deposited_events ADD COLUMN IF NOT EXISTS stream_key INT, ADD COLUMN IF NOT EXISTS stream_entry BIGINT;
ALTER TABLE redeemed_events ADD COLUMN IF NOT EXISTS stream_key INT, ADD COLUMN IF NOT EXISTS stream_entry BIGINT;
ALTER TABLE share_price_changed_events ADD COLUMN IF NOT EXISTS stream_key INT, ADD COLUMN IF NOT EXISTS stream_entry BIGINT;
ALTER TABLE generic_events ADD COLUMN IF NOT EXISTS stream_key INT, ADD COLUMN IF NOT EXISTS stream_entry BIGINT;

-- Blocks known orphaned: their events left the log (or were never applied) and are never
-- applied again. Keyed by block first: a batch looks up its block range.
CREATE TABLE IF NOT EXISTS retracted_block (
    block_number  BIGINT NOT NULL,
    block_hash    TEXT COLLATE "C" NOT NULL,
    network       TEXT COLLATE "C" NOT NULL,
    reorg_id      BIGINT REFERENCES reorg (id),
    PRIMARY KEY (block_number, block_hash, network)
);
