//! The five MultiVault events as rindexer renders them: ABI fields in camelCase, in ABI
//! order, followed by `transaction_information`.

use rand::Rng;
use ruint::aliases::U256;

use super::encode::{self, Address, Fields};

/// A vault as events name it: term, bonding curve and the vault type of the term.
#[derive(Clone, Copy, Debug)]
pub(crate) struct VaultRef {
    pub term: [u8; 32],
    pub curve: u8,
    /// 0 atom, 1 triple, 2 counter triple.
    pub vault_type: u8,
}

impl VaultRef {
    fn push_fields(&self, rng: &mut impl Rng, fields: &mut Fields) {
        fields.push(("termId", encode::bytes32(rng, &self.term)));
        fields.push(("curveId", encode::small(rng, self.curve.into())));
    }
}

fn finish(mut fields: Fields, tx: Fields) -> Fields {
    fields.push(("transaction_information", encode::object(&tx)));
    fields
}

pub(crate) struct AtomCreated<'a> {
    pub creator: &'a Address,
    pub term: &'a [u8; 32],
    pub data: &'a [u8],
    pub wallet: &'a Address,
}

impl AtomCreated<'_> {
    pub fn fields(&self, rng: &mut impl Rng, tx: Fields) -> Fields {
        let fields = vec![
            ("creator", self.creator.json(rng)),
            ("termId", encode::bytes32(rng, self.term)),
            ("atomData", encode::bytes(rng, self.data)),
            ("atomWallet", self.wallet.json(rng)),
        ];
        finish(fields, tx)
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
    pub fn fields(&self, rng: &mut impl Rng, tx: Fields) -> Fields {
        let fields = vec![
            ("creator", self.creator.json(rng)),
            ("termId", encode::bytes32(rng, self.term)),
            ("subjectId", encode::bytes32(rng, self.subject)),
            ("predicateId", encode::bytes32(rng, self.predicate)),
            ("objectId", encode::bytes32(rng, self.object)),
        ];
        finish(fields, tx)
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
    pub fn fields(&self, rng: &mut impl Rng, tx: Fields) -> Fields {
        let mut fields = vec![("sender", self.sender.json(rng)), ("receiver", self.receiver.json(rng))];
        self.vault.push_fields(rng, &mut fields);
        fields.push(("assets", encode::amount(rng, self.assets)));
        fields.push(("assetsAfterFees", encode::amount(rng, self.assets_after_fees)));
        fields.push(("shares", encode::amount(rng, self.shares)));
        fields.push(("totalShares", encode::amount(rng, self.total_shares)));
        fields.push(("vaultType", encode::small(rng, self.vault.vault_type.into())));
        finish(fields, tx)
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
    pub fn fields(&self, rng: &mut impl Rng, tx: Fields) -> Fields {
        let mut fields = vec![("sender", self.sender.json(rng)), ("receiver", self.receiver.json(rng))];
        self.vault.push_fields(rng, &mut fields);
        fields.push(("shares", encode::amount(rng, self.shares)));
        fields.push(("totalShares", encode::amount(rng, self.total_shares)));
        fields.push(("assets", encode::amount(rng, self.assets)));
        fields.push(("fees", encode::amount(rng, self.fees)));
        fields.push(("vaultType", encode::small(rng, self.vault.vault_type.into())));
        finish(fields, tx)
    }
}

pub(crate) struct SharePriceChanged {
    pub vault: VaultRef,
    pub share_price: U256,
    pub total_assets: U256,
    pub total_shares: U256,
}

impl SharePriceChanged {
    pub fn fields(&self, rng: &mut impl Rng, tx: Fields) -> Fields {
        let mut fields = Vec::with_capacity(7);
        self.vault.push_fields(rng, &mut fields);
        fields.push(("sharePrice", encode::amount(rng, self.share_price)));
        fields.push(("totalAssets", encode::amount(rng, self.total_assets)));
        fields.push(("totalShares", encode::amount(rng, self.total_shares)));
        fields.push(("vaultType", encode::small(rng, self.vault.vault_type.into())));
        finish(fields, tx)
    }
}
