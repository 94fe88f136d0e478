//! Block and transaction bookkeeping: where each generated log sits on the chain.
//!
//! Log indexes count up within a block across every event type, so
//! `(block_number, log_index)` is unique over the whole workload, as on a real chain.

use rand::Rng;

use super::encode::{self, Encoding, Fields};

/// The MultiVault contract every event comes from (Intuition mainnet, as in the samples;
/// rindexer writes it in lower case).
const MULTIVAULT: &str = "0x6E35cF57A41fA15eA0EaE9C33e751b01A784Fe7e";
pub(crate) const CHAIN_ID: u64 = 1155;
pub(crate) const NETWORK: &str = "intuition";

/// Chain shape knobs, copied from the workload config.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ChainShape {
    pub start_block: u64,
    pub start_timestamp: u64,
    pub block_time_secs: u64,
    pub max_txs_per_block: u32,
    pub encoding: Encoding,
}

pub(crate) struct Chain {
    shape: ChainShape,
    /// `None` until the first transaction opens the first block.
    block: Option<u64>,
    timestamp: u64,
    block_hash: [u8; 32],
    txs_left: u32,
    log_index: u64,
    tx_index: u64,
    tx_hash: [u8; 32],
}

/// Where one log landed; `fields` is its `transaction_information` object.
pub(crate) struct Log {
    pub block: u64,
    pub fields: Fields,
}

impl Chain {
    pub fn new(shape: ChainShape) -> Self {
        Chain {
            shape,
            block: None,
            timestamp: shape.start_timestamp,
            block_hash: [0; 32],
            txs_left: 0,
            log_index: 0,
            tx_index: 0,
            tx_hash: [0; 32],
        }
    }

    /// The last block a log was placed in.
    pub fn current_block(&self) -> Option<u64> {
        self.block
    }

    /// Open a transaction; its logs share one hash and sit next to each other.
    pub fn begin_tx(&mut self, rng: &mut impl Rng) {
        if self.txs_left == 0 {
            self.next_block(rng);
        }
        self.txs_left -= 1;
        // Other contracts' transactions sit between ours.
        self.tx_index += rng.gen_range(1..=12);
        self.tx_hash = rng.gen();
    }

    fn next_block(&mut self, rng: &mut impl Rng) {
        // Now and then a run of blocks has no Intuition activity.
        let step = if rng.gen_ratio(1, 10) { rng.gen_range(2..=20) } else { 1 };
        self.block = Some(self.block.map_or(self.shape.start_block, |b| b + step));
        if self.block != Some(self.shape.start_block) {
            self.timestamp += step * self.shape.block_time_secs;
        }
        self.block_hash = rng.gen();
        self.txs_left = rng.gen_range(1..=self.shape.max_txs_per_block.max(1));
        self.log_index = 0;
        self.tx_index = rng.gen_range(0..8);
    }

    /// The next log of the open transaction.
    pub fn log(&mut self, rng: &mut impl Rng) -> Log {
        let block = self.block.expect("begin_tx opens a block before any log");
        let log_index = self.log_index;
        self.log_index += 1;
        // rindexer sends null when the node did not return the block timestamp.
        let enc = self.shape.encoding;
        let timestamp =
            if rng.gen_ratio(1, 20) { "null".to_owned() } else { encode::hex_int(rng, enc, self.timestamp) };
        let address = match enc {
            Encoding::Rindexer => MULTIVAULT.to_ascii_lowercase(),
            Encoding::Mixed => MULTIVAULT.to_owned(),
        };
        let mut fields = vec![
            ("address", encode::string(&address)),
            ("block_hash", format!("\"0x{}\"", hex::encode(self.block_hash))),
            ("block_number", encode::int(rng, enc, block)),
            ("block_timestamp", timestamp),
            ("log_index", encode::hex_int(rng, enc, log_index)),
            ("network", encode::string(NETWORK)),
            ("transaction_hash", format!("\"0x{}\"", hex::encode(self.tx_hash))),
            ("transaction_index", encode::int(rng, enc, self.tx_index)),
            ("chain_id", CHAIN_ID.to_string()),
        ];
        enc.order(&mut fields);
        Log { block, fields }
    }
}
