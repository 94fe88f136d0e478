//! A small simulation of MultiVault accounting, so that the amounts in generated events
//! agree with each other the way on-chain ones do: a Deposited carries the receiver's new
//! balance, a Redeemed the owner's remaining balance, and the SharePriceChanged that
//! follows carries the vault's new totals.
//!
//! The fee and curve model is simplified (fixed basis-point fees, curve 2 mints fewer
//! shares as its vault fills); only the internal consistency matters to the sync engine.

use std::collections::HashMap;

use rand::Rng;
use ruint::aliases::{U256, U512};

const WAD: U256 = U256::from_limbs([1_000_000_000_000_000_000, 0, 0, 0]);
const BPS: u64 = 10_000;
/// Leaves the vault.
const PROTOCOL_FEE_BPS: u64 = 100;
/// Stays in the vault, raising the share price for existing holders.
const ENTRY_FEE_BPS: u64 = 50;
const EXIT_FEE_BPS: u64 = 50;

/// A vault: one term on one bonding curve. `term` indexes the generator's term list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct VaultKey {
    pub term: u32,
    pub curve: u8,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct PositionKey {
    pub vault: VaultKey,
    pub account: u32,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct VaultTotals {
    pub total_shares: U256,
    pub total_assets: U256,
}

impl VaultTotals {
    /// Assets per 10^18 shares; an empty vault starts at 1:1.
    pub fn share_price(&self) -> U256 {
        if self.total_shares.is_zero() {
            WAD
        } else {
            mul_div(self.total_assets, WAD, self.total_shares)
        }
    }
}

pub(crate) struct Deposit {
    pub assets_after_fees: U256,
    pub shares: U256,
    /// The receiver's balance after the deposit.
    pub receiver_shares: U256,
    pub vault: VaultTotals,
}

pub(crate) struct Redeem {
    pub assets: U256,
    pub fees: U256,
    /// The owner's balance after the redeem; zero when the position was closed.
    pub owner_shares: U256,
    pub vault: VaultTotals,
}

struct Holding {
    shares: U256,
    /// Index in `Book::holders`, for O(1) removal when the position closes.
    slot: usize,
}

#[derive(Default)]
pub(crate) struct Book {
    vaults: HashMap<VaultKey, VaultTotals>,
    positions: HashMap<PositionKey, Holding>,
    /// Every position with shares, so redeems can pick one uniformly.
    holders: Vec<PositionKey>,
}

impl Book {
    pub fn deposit(&mut self, key: PositionKey, assets: U256) -> Deposit {
        let vault = self.vaults.entry(key.vault).or_default();
        let entry_fee = assets * U256::from(ENTRY_FEE_BPS) / U256::from(BPS);
        let protocol_fee = assets * U256::from(PROTOCOL_FEE_BPS) / U256::from(BPS);
        let assets_after_fees = assets - entry_fee - protocol_fee;
        let mut shares = mul_div(assets_after_fees, WAD, vault.share_price());
        if key.vault.curve == 2 && !vault.total_shares.is_zero() {
            // A progressive curve: later depositors get fewer shares per asset.
            shares = shares * U256::from(9u64) / U256::from(10u64);
        }
        let shares = shares.max(U256::from(1u64));
        vault.total_assets += assets_after_fees + entry_fee;
        vault.total_shares += shares;
        let vault = *vault;
        let receiver_shares = self.add_shares(key, shares);
        Deposit { assets_after_fees, shares, receiver_shares, vault }
    }

    /// Burn `shares` (at most the position's balance) of an existing position.
    pub fn redeem(&mut self, key: PositionKey, shares: U256) -> Redeem {
        let vault = self.vaults.get_mut(&key.vault).expect("a held position has a vault");
        let (assets, fees) = if shares == vault.total_shares {
            // The last holder leaves: everything goes out, the vault starts over at 1:1.
            (vault.total_assets, U256::ZERO)
        } else {
            let gross = mul_div(shares, vault.total_assets, vault.total_shares);
            let fees = gross * U256::from(EXIT_FEE_BPS) / U256::from(BPS);
            (gross - fees, fees)
        };
        vault.total_assets -= assets;
        vault.total_shares -= shares;
        let vault = *vault;
        let owner_shares = self.remove_shares(key, shares);
        Redeem { assets, fees, owner_shares, vault }
    }

    /// A uniformly chosen open position and its balance.
    pub fn random_holding(&self, rng: &mut impl Rng) -> Option<(PositionKey, U256)> {
        if self.holders.is_empty() {
            return None;
        }
        let key = self.holders[rng.gen_range(0..self.holders.len())];
        Some((key, self.positions[&key].shares))
    }

    fn add_shares(&mut self, key: PositionKey, shares: U256) -> U256 {
        let holders = &mut self.holders;
        let holding = self.positions.entry(key).or_insert_with(|| {
            holders.push(key);
            Holding { shares: U256::ZERO, slot: holders.len() - 1 }
        });
        holding.shares += shares;
        holding.shares
    }

    fn remove_shares(&mut self, key: PositionKey, shares: U256) -> U256 {
        let holding = self.positions.get_mut(&key).expect("redeem from an open position");
        holding.shares -= shares;
        let left = holding.shares;
        if left.is_zero() {
            let slot = holding.slot;
            self.positions.remove(&key);
            self.holders.swap_remove(slot);
            if let Some(moved) = self.holders.get(slot) {
                self.positions.get_mut(moved).expect("holders are positions").slot = slot;
            }
        }
        left
    }
}

/// `a * b / d` without intermediate overflow; saturates (never reached with the amounts
/// generated, but a panic in a load generator would be worse than a clipped value).
fn mul_div(a: U256, b: U256, d: U256) -> U256 {
    let wide: U512 = a.widening_mul(b);
    let q = wide / U512::from(d);
    U256::saturating_from(q)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(account: u32, curve: u8) -> PositionKey {
        PositionKey { vault: VaultKey { term: 0, curve }, account }
    }

    #[test]
    fn totals_equal_sum_of_positions() {
        let mut book = Book::default();
        let wad = U256::from(10u64).pow(U256::from(18u64));
        let a = book.deposit(key(1, 2), wad);
        let b = book.deposit(key(2, 2), wad * U256::from(3u64));
        assert_eq!(b.vault.total_shares, a.receiver_shares + b.receiver_shares);
        let r = book.redeem(key(1, 2), a.receiver_shares);
        assert!(r.owner_shares.is_zero());
        assert_eq!(r.vault.total_shares, b.receiver_shares);
        assert_eq!(book.holders, vec![key(2, 2)]);
        let last = book.redeem(key(2, 2), b.receiver_shares);
        assert_eq!(last.vault, VaultTotals::default());
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        assert!(book.random_holding(&mut rng).is_none());
    }

    #[test]
    fn entry_fees_raise_the_price() {
        let mut book = Book::default();
        let wad = U256::from(10u64).pow(U256::from(18u64));
        let d = book.deposit(key(1, 1), wad);
        assert!(d.vault.share_price() > wad);
    }
}
