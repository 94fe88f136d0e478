-- Event tables: the append-only log of what rindexer delivered.
-- Every event is identified by (transaction_hash, log_index); the engine inserts with
-- ON CONFLICT DO NOTHING so a redelivered event is a no-op.
-- Canonical forms: ids/hashes/addresses lowercase 0x hex TEXT, uint256 NUMERIC(78,0).

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

-- Hex ids compare as bytes: COLLATE "C" keeps every index probe a memcmp whatever the
-- database's default collation (about 15 % of insert time under a libc locale).
-- No secondary indexes here: each one costs about as much as the primary key on every
-- insert, and the reference views read whole tables anyway.
