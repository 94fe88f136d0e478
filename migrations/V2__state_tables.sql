-- Level 1-3 tables: the seed's tables, now plain tables maintained incrementally.
-- Ordering columns (block, log_index) make every last-write-wins decision independent of
-- arrival order. Running sums and market caps are unconstrained NUMERIC: a sum of valid
-- uint256 amounts may exceed 78 digits and must never make a batch fail.

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
CREATE INDEX position_last_deposit_idx ON position (last_deposit_block, last_deposit_log_index)
    WHERE last_deposit_block IS NOT NULL;
CREATE INDEX position_last_redeem_idx ON position (last_redeem_block, last_redeem_log_index)
    WHERE last_redeem_block IS NOT NULL;

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
CREATE INDEX vault_last_price_idx ON vault (last_price_block, last_price_log_index)
    WHERE last_price_block IS NOT NULL;

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
