-- Event keys in chain order. A log is identified on chain by (block_hash, log_index):
-- log_index is block-wide and the block hash tells forks apart. Led by block_number, the key
-- makes a batch, which the engine applies in chain order, an append at the right edge of
-- each index, where (transaction_hash, log_index) scattered every insert over the whole
-- B-tree: once an index outgrew shared_buffers nearly every insert read a page, and after
-- each checkpoint wrote a full-page image to the WAL. transaction_hash stays a column.
--
-- On a populated log this rebuilds each index (an ACCESS EXCLUSIVE lock for as long as that
-- takes): run it with the engines stopped.

ALTER TABLE atom_created_events
    DROP CONSTRAINT atom_created_events_pkey,
    ADD PRIMARY KEY (block_number, log_index, block_hash);
ALTER TABLE triple_created_events
    DROP CONSTRAINT triple_created_events_pkey,
    ADD PRIMARY KEY (block_number, log_index, block_hash);
ALTER TABLE deposited_events
    DROP CONSTRAINT deposited_events_pkey,
    ADD PRIMARY KEY (block_number, log_index, block_hash);
ALTER TABLE redeemed_events
    DROP CONSTRAINT redeemed_events_pkey,
    ADD PRIMARY KEY (block_number, log_index, block_hash);
ALTER TABLE share_price_changed_events
    DROP CONSTRAINT share_price_changed_events_pkey,
    ADD PRIMARY KEY (block_number, log_index, block_hash);
ALTER TABLE generic_events
    DROP CONSTRAINT generic_events_pkey,
    ADD PRIMARY KEY (block_number, log_index, block_hash);
