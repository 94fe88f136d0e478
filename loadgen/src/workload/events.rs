//! The five MultiVault events as rindexer renders them: ABI fields in camelCase and
//! `transaction_information` (in alphabetical order with rindexer's encoding, ABI order with
//! the mixed one).

use rand::Rng;
use ruint::aliases::U256;

use super::encode::{self, Address, Encoding, Fields};

/// A vault as events name it: term, bonding curve and the vault type of the term.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VaultRef {
    pub term: [u8; 32],
    pub curve: u8,
    /// 0 atom, 1 triple, 2 counter triple.
    pub vault_type: u8,
}

impl VaultRef {
    fn push_fields(&self, rng: &mut impl Rng, enc: Encoding, fields: &mut Fields) {
        fields.push(("termId", encode::bytes32(rng, enc, &self.term)));
        fields.push(("curveId", encode::small_uint256(rng, enc, self.curve.into())));
    }
}

fn finish(enc: Encoding, mut fields: Fields, tx: Fields) -> Fields {
    fields.push(("transaction_information", encode::object(&tx)));
    enc.order(&mut fields);
    fields
}

pub(crate) struct AtomCreated<'a> {
    pub creator: &'a Address,
    pub term: &'a [u8; 32],
    pub data: &'a [u8],
    pub wallet: &'a Address,
}

impl AtomCreated<'_> {
    pub fn fields(&self, rng: &mut impl Rng, enc: Encoding, tx: Fields) -> Fields {
        let fields = vec![
            ("creator", self.creator.json(rng, enc)),
            ("termId", encode::bytes32(rng, enc, self.term)),
            ("atomData", encode::bytes(rng, enc, self.data)),
            ("atomWallet", self.wallet.json(rng, enc)),
        ];
        finish(enc, fields, tx)
    }
}

pub(crate) struct TripleCreated<'a> {
    pub creator: &'a Address,
    pub term: &'a [u8; 32],
    pub subject: &'a [u8; 32],
    pub predicate: &'a [u8; 32],
    pub object: &'a [u8; 32],
}

impl TripleCreated<'_> {
    pub fn fields(&self, rng: &mut impl Rng, enc: Encoding, tx: Fields) -> Fields {
        let fields = vec![
            ("creator", self.creator.json(rng, enc)),
            ("termId", encode::bytes32(rng, enc, self.term)),
            ("subjectId", encode::bytes32(rng, enc, self.subject)),
            ("predicateId", encode::bytes32(rng, enc, self.predicate)),
            ("objectId", encode::bytes32(rng, enc, self.object)),
        ];
        finish(enc, fields, tx)
    }
}

pub(crate) struct Deposited<'a> {
    pub sender: &'a Address,
    pub receiver: &'a Address,
    pub vault: VaultRef,
    pub assets: U256,
    pub assets_after_fees: U256,
    pub shares: U256,
    /// The receiver's balance after this deposit.
    pub total_shares: U256,
}

impl Deposited<'_> {
    pub fn fields(&self, rng: &mut impl Rng, enc: Encoding, tx: Fields) -> Fields {
        let mut fields = vec![("sender", self.sender.json(rng, enc)), ("receiver", self.receiver.json(rng, enc))];
        self.vault.push_fields(rng, enc, &mut fields);
        fields.push(("assets", encode::amount(rng, enc, self.assets)));
        fields.push(("assetsAfterFees", encode::amount(rng, enc, self.assets_after_fees)));
        fields.push(("shares", encode::amount(rng, enc, self.shares)));
        fields.push(("totalShares", encode::amount(rng, enc, self.total_shares)));
        fields.push(("vaultType", encode::small(rng, enc, self.vault.vault_type.into())));
        finish(enc, fields, tx)
    }
}

pub(crate) struct Redeemed<'a> {
    /// The owner whose shares are burned.
    pub sender: &'a Address,
    pub receiver: &'a Address,
    pub vault: VaultRef,
    pub shares: U256,
    /// The sender's balance after this redeem.
    pub total_shares: U256,
    pub assets: U256,
    pub fees: U256,
}

impl Redeemed<'_> {
    pub fn fields(&self, rng: &mut impl Rng, enc: Encoding, tx: Fields) -> Fields {
        let mut fields = vec![("sender", self.sender.json(rng, enc)), ("receiver", self.receiver.json(rng, enc))];
        self.vault.push_fields(rng, enc, &mut fields);
        fields.push(("shares", encode::amount(rng, enc, self.shares)));
        fields.push(("totalShares", encode::amount(rng, enc, self.total_shares)));
        fields.push(("assets", encode::amount(rng, enc, self.assets)));
        fields.push(("fees", encode::amount(rng, enc, self.fees)));
        fields.push(("vaultType", encode::small(rng, enc, self.vault.vault_type.into())));
        finish(enc, fields, tx)
    }
}

pub(crate) struct SharePriceChanged {
    pub vault: VaultRef,
    pub share_price: U256,
    pub total_assets: U256,
    pub total_shares: U256,
}

impl SharePriceChanged {
    pub fn fields(&self, rng: &mut impl Rng, enc: Encoding, tx: Fields) -> Fields {
        let mut fields = Vec::with_capacity(7);
        self.vault.push_fields(rng, enc, &mut fields);
        fields.push(("sharePrice", encode::amount(rng, enc, self.share_price)));
        fields.push(("totalAssets", encode::amount(rng, enc, self.total_assets)));
        fields.push(("totalShares", encode::amount(rng, enc, self.total_shares)));
        fields.push(("vaultType", encode::small(rng, enc, self.vault.vault_type.into())));
        finish(enc, fields, tx)
    }
}
