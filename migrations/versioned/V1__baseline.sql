-- The schema: tables, types, indexes, schemas and the readers views (operator state). Every
-- function, trigger and reference view lives in migrations/repeatable/, re-applied by the
-- engine on every start; a change here is a new versioned migration (V2__…), as is a change
-- of a function's signature or return type.
--
-- Canonical forms: ids, hashes and addresses are lowercase 0x hex TEXT COLLATE "C" (index
-- probes stay a memcmp whatever the database's collation: about 15 % of insert time under a
-- libc locale); uint256 amounts NUMERIC(78,0). Running sums and market caps are unconstrained
-- NUMERIC: a sum of valid uint256 amounts may exceed 78 digits and must never fail a batch.

-- Event log -------------------------------------------------------------------------------
-- Append-only: what rindexer delivered. Every event is identified by (transaction_hash,
-- log_index); the engine inserts with ON CONFLICT DO NOTHING, so a redelivered event is a
-- no-op. No secondary indexes: each would cost about as much as the primary key on every
-- insert, and the reference views read whole tables anyway.

CREATE TABLE atom_created_events (
    transaction_hash  TEXT COLLATE "C"        NOT NULL,
    log_index         BIGINT      NOT NULL,
    block_number      BIGINT      NOT NULL,
    block_hash        TEXT COLLATE "C"        NOT NULL,
    address           TEXT COLLATE "C"        NOT NULL,
    network           TEXT        NOT NULL,
    transaction_index BIGINT      NOT NULL,
    block_timestamp   TIMESTAMPTZ,
    creator           TEXT COLLATE "C"        NOT NULL,
    term_id           TEXT COLLATE "C"        NOT NULL,
    atom_wallet       TEXT COLLATE "C"        NOT NULL,
    atom_data         BYTEA       NOT NULL,
    -- atom_data as text when it is valid UTF-8 without NUL bytes, else NULL.
    -- Decided once at decode time so the trigger and the reference view agree.
    atom_data_text    TEXT,
    PRIMARY KEY (transaction_hash, log_index)
);

CREATE TABLE triple_created_events (
    transaction_hash  TEXT COLLATE "C"        NOT NULL,
    log_index         BIGINT      NOT NULL,
    block_number      BIGINT      NOT NULL,
    block_hash        TEXT COLLATE "C"        NOT NULL,
    address           TEXT COLLATE "C"        NOT NULL,
    network           TEXT        NOT NULL,
    transaction_index BIGINT      NOT NULL,
    block_timestamp   TIMESTAMPTZ,
    creator           TEXT COLLATE "C"        NOT NULL,
    term_id           TEXT COLLATE "C"        NOT NULL,
    subject_id        TEXT COLLATE "C"        NOT NULL,
    predicate_id      TEXT COLLATE "C"        NOT NULL,
    object_id         TEXT COLLATE "C"        NOT NULL,
    -- keccak256(keccak256("COUNTER_SALT") || term_id); PostgreSQL has no keccak,
    -- so the engine computes it at decode time.
    counter_term_id   TEXT COLLATE "C"        NOT NULL,
    PRIMARY KEY (transaction_hash, log_index)
);

CREATE TABLE deposited_events (
    transaction_hash  TEXT COLLATE "C"          NOT NULL,
    log_index         BIGINT        NOT NULL,
    block_number      BIGINT        NOT NULL,
    block_hash        TEXT COLLATE "C"          NOT NULL,
    address           TEXT COLLATE "C"          NOT NULL,
    network           TEXT          NOT NULL,
    transaction_index BIGINT        NOT NULL,
    block_timestamp   TIMESTAMPTZ,
    sender            TEXT COLLATE "C"          NOT NULL,
    receiver          TEXT COLLATE "C"          NOT NULL,
    term_id           TEXT COLLATE "C"          NOT NULL,
    curve_id          NUMERIC(78,0) NOT NULL,
    assets            NUMERIC(78,0) NOT NULL,
    assets_after_fees NUMERIC(78,0) NOT NULL,
    shares            NUMERIC(78,0) NOT NULL,
    total_shares      NUMERIC(78,0) NOT NULL,
    vault_type        SMALLINT      NOT NULL,
    PRIMARY KEY (transaction_hash, log_index)
);

CREATE TABLE redeemed_events (
    transaction_hash  TEXT COLLATE "C"          NOT NULL,
    log_index         BIGINT        NOT NULL,
    block_number      BIGINT        NOT NULL,
    block_hash        TEXT COLLATE "C"          NOT NULL,
    address           TEXT COLLATE "C"          NOT NULL,
    network           TEXT          NOT NULL,
    transaction_index BIGINT        NOT NULL,
    block_timestamp   TIMESTAMPTZ,
    sender            TEXT COLLATE "C"          NOT NULL,
    receiver          TEXT COLLATE "C"          NOT NULL,
    term_id           TEXT COLLATE "C"          NOT NULL,
    curve_id          NUMERIC(78,0) NOT NULL,
    shares            NUMERIC(78,0) NOT NULL,
    total_shares      NUMERIC(78,0) NOT NULL,
    assets            NUMERIC(78,0) NOT NULL,
    fees              NUMERIC(78,0) NOT NULL,
    vault_type        SMALLINT      NOT NULL,
    PRIMARY KEY (transaction_hash, log_index)
);

CREATE TABLE share_price_changed_events (
    transaction_hash  TEXT COLLATE "C"          NOT NULL,
    log_index         BIGINT        NOT NULL,
    block_number      BIGINT        NOT NULL,
    block_hash        TEXT COLLATE "C"          NOT NULL,
    address           TEXT COLLATE "C"          NOT NULL,
    network           TEXT          NOT NULL,
    transaction_index BIGINT        NOT NULL,
    block_timestamp   TIMESTAMPTZ,
    term_id           TEXT COLLATE "C"          NOT NULL,
    curve_id          NUMERIC(78,0) NOT NULL,
    share_price       NUMERIC(78,0) NOT NULL,
    total_assets      NUMERIC(78,0) NOT NULL,
    total_shares      NUMERIC(78,0) NOT NULL,
    vault_type        SMALLINT      NOT NULL,
    PRIMARY KEY (transaction_hash, log_index)
);

-- Events the engine does not model; kept whole so nothing rindexer sent is lost.
CREATE TABLE generic_events (
    transaction_hash  TEXT COLLATE "C"        NOT NULL,
    log_index         BIGINT      NOT NULL,
    block_number      BIGINT      NOT NULL,
    block_hash        TEXT COLLATE "C"        NOT NULL,
    address           TEXT COLLATE "C"        NOT NULL,
    network           TEXT        NOT NULL,
    transaction_index BIGINT      NOT NULL,
    block_timestamp   TIMESTAMPTZ,
    event_name        TEXT        NOT NULL,
    event_data        JSONB       NOT NULL,
    PRIMARY KEY (transaction_hash, log_index)
);

-- Level 1 ------------------------------------------------------------------------------

CREATE TABLE atom (
    term_id              TEXT COLLATE "C" PRIMARY KEY,
    wallet_id            TEXT COLLATE "C"   NOT NULL,
    creator_id           TEXT COLLATE "C"   NOT NULL,
    data                 TEXT,
    raw_data             BYTEA,
    type                 TEXT,
    emoji                TEXT,
    label                TEXT,
    image                TEXT,
    value_id             TEXT,
    resolving_status     TEXT   NOT NULL DEFAULT 'Pending',
    last_event_block     BIGINT NOT NULL,
    last_event_log_index BIGINT NOT NULL
);

CREATE TABLE triple (
    term_id              TEXT COLLATE "C" PRIMARY KEY,
    creator_id           TEXT COLLATE "C"   NOT NULL,
    subject_id           TEXT COLLATE "C"   NOT NULL,
    predicate_id         TEXT COLLATE "C"   NOT NULL,
    object_id            TEXT COLLATE "C"   NOT NULL,
    counter_term_id      TEXT COLLATE "C"   NOT NULL,
    last_event_block     BIGINT NOT NULL,
    last_event_log_index BIGINT NOT NULL
);
CREATE INDEX triple_counter_term_idx ON triple (counter_term_id);
CREATE INDEX triple_predicate_object_idx ON triple (predicate_id, object_id);
CREATE INDEX triple_subject_predicate_idx ON triple (subject_id, predicate_id);

CREATE TABLE position (
    account_id                            TEXT COLLATE "C"          NOT NULL,
    term_id                               TEXT COLLATE "C"          NOT NULL,
    curve_id                              NUMERIC(78,0) NOT NULL,
    shares                                NUMERIC(78,0) NOT NULL,
    total_deposit_assets_after_total_fees NUMERIC       NOT NULL DEFAULT 0,
    total_redeem_assets_for_receiver      NUMERIC       NOT NULL DEFAULT 0,
    -- the Deposited-or-Redeemed event whose totalShares is in `shares`
    shares_block                          BIGINT        NOT NULL,
    shares_log_index                      BIGINT        NOT NULL,
    last_deposit_block                    BIGINT,
    last_deposit_log_index                BIGINT,
    last_redeem_block                     BIGINT,
    last_redeem_log_index                 BIGINT,
    PRIMARY KEY (account_id, term_id, curve_id)
);
-- Readers list a vault's live positions; the partial index keeps empty positions out.
CREATE INDEX position_vault_active_idx ON position (term_id, curve_id) WHERE shares > 0;

CREATE TABLE vault (
    term_id              TEXT COLLATE "C"          NOT NULL,
    curve_id             NUMERIC(78,0) NOT NULL,
    total_shares         NUMERIC(78,0) NOT NULL DEFAULT 0,
    current_share_price  NUMERIC(78,0) NOT NULL DEFAULT 0,
    total_assets         NUMERIC(78,0) NOT NULL DEFAULT 0,
    market_cap           NUMERIC       NOT NULL DEFAULT 0,
    position_count       BIGINT        NOT NULL DEFAULT 0,
    vault_type           TEXT          NOT NULL,
    -- latest SharePriceChanged applied (NULL until one arrives)
    last_price_block     BIGINT,
    last_price_log_index BIGINT,
    -- latest event of any kind naming the vault; decides vault_type
    last_event_block     BIGINT        NOT NULL,
    last_event_log_index BIGINT        NOT NULL,
    PRIMARY KEY (term_id, curve_id)
);

-- Level 2 ------------------------------------------------------------------------------

CREATE TABLE term (
    id               TEXT COLLATE "C" PRIMARY KEY,
    type             TEXT    NOT NULL,
    atom_id          TEXT COLLATE "C",
    triple_id        TEXT COLLATE "C",
    total_assets     NUMERIC NOT NULL DEFAULT 0,
    total_market_cap NUMERIC NOT NULL DEFAULT 0
);

-- Level 3 (maintained by analytics-worker) -----------------------------------------------

CREATE TABLE triple_vault (
    term_id         TEXT COLLATE "C"          NOT NULL,
    counter_term_id TEXT COLLATE "C"          NOT NULL,
    curve_id        NUMERIC(78,0) NOT NULL,
    total_shares    NUMERIC       NOT NULL,
    total_assets    NUMERIC       NOT NULL,
    position_count  BIGINT        NOT NULL,
    market_cap      NUMERIC       NOT NULL,
    PRIMARY KEY (term_id, curve_id)
);

CREATE TABLE triple_term (
    term_id              TEXT COLLATE "C"    PRIMARY KEY,
    counter_term_id      TEXT COLLATE "C"    NOT NULL,
    total_assets         NUMERIC NOT NULL,
    total_market_cap     NUMERIC NOT NULL,
    total_position_count BIGINT  NOT NULL
);

CREATE TABLE predicate_object (
    predicate_id         TEXT COLLATE "C"    NOT NULL,
    object_id            TEXT COLLATE "C"    NOT NULL,
    triple_count         BIGINT  NOT NULL,
    total_position_count BIGINT  NOT NULL,
    total_market_cap     NUMERIC NOT NULL,
    PRIMARY KEY (predicate_id, object_id)
);

CREATE TABLE subject_predicate (
    subject_id           TEXT COLLATE "C"    NOT NULL,
    predicate_id         TEXT COLLATE "C"    NOT NULL,
    triple_count         BIGINT  NOT NULL,
    total_position_count BIGINT  NOT NULL,
    total_market_cap     NUMERIC NOT NULL,
    PRIMARY KEY (subject_id, predicate_id)
);

-- Ordering columns (block, log_index) above make every last-write-wins decision independent
-- of arrival order; no index on them: the merges find every row by its primary key.

-- Types shared by the merge and analytics functions --------------------------------------

-- One vault touched by a batch (see touch_vaults): rows unique per (term_id, curve_id).
CREATE TYPE vault_touch AS (
    term_id          TEXT,
    curve_id         NUMERIC,
    vault_type       SMALLINT,
    block_number     BIGINT,
    log_index        BIGINT,
    position_delta   BIGINT
);

-- A (predicate_id, object_id) or (subject_id, predicate_id) pair of the analytics refresh.
CREATE TYPE analytics_pair AS (a TEXT, b TEXT);

-- Outbox ------------------------------------------------------------------------------------
-- Each batch inserts the term ids it touched in its own transaction; after its ack the
-- engine publishes them to the `term_updates` stream and deletes what it published. A crash
-- in between leaves the rows here, and the next publish (or the next engine's start) sends
-- them.
CREATE TABLE term_update_outbox (
    id           BIGSERIAL   PRIMARY KEY,
    term_ids     TEXT[]      NOT NULL,
    committed_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- Schemas of the reference views and of the readers ----------------------------------------
-- snapshot: every level 1-3 table recomputed from the event log (repeatable/snapshot.sql).
-- readers: what applications query; each view reads the maintained table or its reference
-- view (repeatable/readers.sql switches them). Which one is operator state, so the views are
-- created here once, on the maintained tables, and only ever switched after that.
CREATE SCHEMA snapshot;
CREATE SCHEMA readers;
CREATE VIEW readers.atom AS SELECT * FROM public.atom;
CREATE VIEW readers.triple AS SELECT * FROM public.triple;
CREATE VIEW readers.position AS SELECT * FROM public.position;
CREATE VIEW readers.vault AS SELECT * FROM public.vault;
CREATE VIEW readers.term AS SELECT * FROM public.term;
CREATE VIEW readers.triple_vault AS SELECT * FROM public.triple_vault;
CREATE VIEW readers.triple_term AS SELECT * FROM public.triple_term;
CREATE VIEW readers.predicate_object AS SELECT * FROM public.predicate_object;
CREATE VIEW readers.subject_predicate AS SELECT * FROM public.subject_predicate;
