//! Playing the chain forward: atoms, then triples, then vault activity.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Zipf};
use ruint::aliases::U256;
use sha3::{Digest, Keccak256};

use super::atoms::{atom_data, predicate_data, PREDICATES};
use super::chain::{Chain, ChainShape};
use super::encode::{self, Address, Encoding, Fields};
use super::events::{self, VaultRef};
use super::pack::Packer;
use super::vaults::{Book, PositionKey, VaultKey};
use super::{EventType, StreamMessage, WorkloadConfig, WorkloadStats};

/// How many events of each phase, so that the total is exactly `config.events`.
#[derive(Debug, PartialEq, Eq)]
struct Plan {
    atoms: usize,
    triples: usize,
    /// Each is two events: Deposited or Redeemed, then SharePriceChanged.
    vault_ops: usize,
}

impl Plan {
    fn new(config: &WorkloadConfig) -> Plan {
        if config.events == 0 {
            return Plan { atoms: 0, triples: 0, vault_ops: 0 };
        }
        // At least half of the events are vault activity, whatever the knobs say.
        let quarter = config.events / 4;
        let mut atoms = config.atoms.min(quarter).max(1);
        let combinations = atoms.min(PREDICATES.len()) * atoms * atoms;
        // Half the combinations at most, so rejection sampling of unique triples stays fast.
        let triples = config.triples.min(quarter).min(combinations / 2);
        let mut rest = config.events - atoms - triples;
        if rest % 2 == 1 {
            atoms += 1;
            rest -= 1;
        }
        Plan { atoms, triples, vault_ops: rest / 2 }
    }
}

/// The good messages of a workload, its atoms' data numbered from `first_atom` (0 but for
/// a slice, see [`super::generate_slice`]).
pub(crate) fn good_messages_from(
    config: &WorkloadConfig,
    rng: ChaCha8Rng,
    packing: ChaCha8Rng,
    first_atom: usize,
) -> (Vec<StreamMessage>, WorkloadStats) {
    let plan = Plan::new(config);
    let mut g = Generator::new(config, rng, packing);
    g.first_atom = first_atom;
    g.create_atoms(plan.atoms);
    g.packer.flush_all();
    g.create_triples(plan.triples);
    g.packer.flush_all();
    g.rank_terms();
    for _ in 0..plan.vault_ops {
        g.vault_op();
    }
    g.packer.flush_all();
    g.stats.first_block = if plan.atoms > 0 { config.start_block } else { 0 };
    g.stats.last_block = g.chain.current_block().unwrap_or(0);
    (g.packer.messages, g.stats)
}

/// The distributions a triple's atoms are drawn from.
struct Picks<'a> {
    /// Local atom indexes, most popular first.
    atom_rank: &'a [usize],
    atom_zipf: &'a Zipf<f64>,
    predicate_zipf: &'a Zipf<f64>,
}

/// A term that has vaults.
struct Term {
    id: [u8; 32],
    vault_type: u8,
}

struct Generator<'c> {
    config: &'c WorkloadConfig,
    rng: ChaCha8Rng,
    chain: Chain,
    packer: Packer,
    accounts: Vec<Address>,
    account_zipf: Zipf<f64>,
    atoms: Vec<[u8; 32]>,
    /// Number of this generator's first atom in `atom_data` (0 unless generating a slice).
    first_atom: usize,
    /// Every atom, triple and counter triple, most popular first once ranked.
    terms: Vec<Term>,
    term_zipf: Option<Zipf<f64>>,
    book: Book,
    stats: WorkloadStats,
}

impl<'c> Generator<'c> {
    fn new(config: &'c WorkloadConfig, mut rng: ChaCha8Rng, packing: ChaCha8Rng) -> Self {
        let accounts: Vec<Address> = (0..config.accounts.max(1)).map(|_| Address::random(&mut rng)).collect();
        let shape = ChainShape {
            start_block: config.start_block,
            start_timestamp: config.start_timestamp,
            block_time_secs: config.block_time_secs,
            max_txs_per_block: config.max_txs_per_block,
            encoding: config.encoding,
        };
        Generator {
            config,
            account_zipf: zipf(accounts.len(), config.zipf_exponent),
            accounts,
            rng,
            chain: Chain::new(shape),
            packer: Packer::new(config.events_per_message, config.encoding, packing),
            atoms: Vec::new(),
            first_atom: 0,
            terms: Vec::new(),
            term_zipf: None,
            book: Book::default(),
            stats: WorkloadStats::default(),
        }
    }

    fn account(&mut self) -> u32 {
        pick(&self.account_zipf, &mut self.rng, self.accounts.len()) as u32
    }

    /// Place the next log of the open transaction and queue the event for its stream.
    fn emit(&mut self, ty: EventType, fields: impl FnOnce(&mut ChaCha8Rng, Encoding, Fields) -> Fields) {
        let log = self.chain.log(&mut self.rng);
        let event = encode::object(&fields(&mut self.rng, self.config.encoding, log.fields));
        self.packer.push(ty, log.block, event);
        self.stats.events += 1;
        *match ty {
            EventType::AtomCreated => &mut self.stats.atoms,
            EventType::TripleCreated => &mut self.stats.triples,
            EventType::Deposited => &mut self.stats.deposits,
            EventType::Redeemed => &mut self.stats.redeems,
            EventType::SharePriceChanged => &mut self.stats.share_price_changes,
        } += 1;
    }

    /// Batch creation is common, so a transaction often holds several creations.
    fn begin_creation_tx(&mut self, first: bool) {
        if first || self.rng.gen_ratio(3, 4) {
            self.chain.begin_tx(&mut self.rng);
        }
    }

    fn create_atoms(&mut self, count: usize) {
        for i in 0..count {
            self.begin_creation_tx(i == 0);
            let data = atom_data(&mut self.rng, self.first_atom + i);
            let term: [u8; 32] = Keccak256::digest(&data).into();
            let creator_index = self.account() as usize;
            let creator = self.accounts[creator_index].clone();
            let wallet = Address::random(&mut self.rng);
            let event = events::AtomCreated { creator: &creator, term: &term, data: &data, wallet: &wallet };
            self.emit(EventType::AtomCreated, |rng, enc, tx| event.fields(rng, enc, tx));
            self.atoms.push(term);
        }
    }

    fn create_triples(&mut self, count: usize) {
        if count == 0 {
            return;
        }
        let shared = self.shared_atoms();
        let predicate_zipf = zipf(shared.len(), 1.0);
        // Popular subjects and objects are spread over the atoms, not the first ones.
        let mut atom_rank: Vec<usize> = (0..self.atoms.len()).collect();
        atom_rank.shuffle(&mut self.rng);
        let atom_zipf = zipf(atom_rank.len(), 1.0);
        let mut seen = HashSet::with_capacity(count);
        for i in 0..count {
            let picks = Picks { atom_rank: &atom_rank, atom_zipf: &atom_zipf, predicate_zipf: &predicate_zipf };
            let (s, p, o) = self.unique_triple(&mut seen, &picks, shared.len());
            self.begin_creation_tx(i == 0);
            let (subject, predicate, object) = (self.atom_id(s, &shared), shared[p], self.atom_id(o, &shared));
            let term: [u8; 32] =
                Keccak256::new().chain_update(subject).chain_update(predicate).chain_update(object).finalize().into();
            let creator_index = self.account() as usize;
            let creator = self.accounts[creator_index].clone();
            let event = events::TripleCreated {
                creator: &creator,
                term: &term,
                subject: &subject,
                predicate: &predicate,
                object: &object,
            };
            self.emit(EventType::TripleCreated, |rng, enc, tx| event.fields(rng, enc, tx));
            self.terms.push(Term { id: term, vault_type: 1 });
            self.terms.push(Term { id: counter_id(&term), vault_type: 2 });
        }
    }

    /// The few atoms every slice of a workload shares: the predicates, which the first slice
    /// creates (its first atoms); a later slice refers to them without creating them again,
    /// as a chain would. Their data does not depend on the random stream, so neither do their ids.
    fn shared_atoms(&self) -> Vec<[u8; 32]> {
        if self.first_atom == 0 {
            return self.atoms.iter().take(PREDICATES.len()).copied().collect();
        }
        (0..PREDICATES.len()).filter_map(predicate_data).map(|data| Keccak256::digest(data).into()).collect()
    }

    /// An atom index of [`Self::unique_triple`]: below `atoms.len()` one of this slice's atoms,
    /// above it one of the shared atoms (which, in a first slice, are its own first atoms).
    fn atom_id(&self, index: usize, shared: &[[u8; 32]]) -> [u8; 32] {
        match self.atoms.get(index) {
            Some(id) => *id,
            None => shared[index - self.atoms.len()],
        }
    }

    /// A (subject, predicate, object) not used yet: atom indexes (see [`Self::atom_id`]) and
    /// a shared-atom index. Zipf-popular atoms collide often, so after a few misses fall back
    /// to uniform picks, which succeed with probability at least 1/2 since at most half the
    /// combinations are taken. A share of triples (`hot_pair_rate`) takes a shared atom as
    /// its object or its subject, never both, so that a few pairs hold many triples and keep
    /// growing slice after slice while every triple stays distinct across slices.
    fn unique_triple(
        &mut self,
        seen: &mut HashSet<(usize, usize, usize)>,
        picks: &Picks,
        predicates: usize,
    ) -> (usize, usize, usize) {
        let n = picks.atom_rank.len();
        let hot = super::probability(self.config.hot_pair_rate);
        // A first slice's shared atoms are its own first ones: the same index for both roles.
        let shared_base = if self.first_atom == 0 { 0 } else { n };
        for attempt in 0.. {
            let candidate = if attempt < 8 {
                let p = pick(picks.predicate_zipf, &mut self.rng, predicates);
                let mut s = picks.atom_rank[pick(picks.atom_zipf, &mut self.rng, n)];
                let mut o = picks.atom_rank[pick(picks.atom_zipf, &mut self.rng, n)];
                if self.rng.gen_bool(hot) {
                    let shared = shared_base + pick(picks.predicate_zipf, &mut self.rng, predicates);
                    if self.rng.gen_bool(0.5) {
                        o = shared;
                    } else {
                        s = shared;
                    }
                }
                (s, p, o)
            } else {
                (self.rng.gen_range(0..n), self.rng.gen_range(0..predicates), self.rng.gen_range(0..n))
            };
            if seen.insert(candidate) {
                return candidate;
            }
        }
        unreachable!("the loop only ends by returning")
    }

    /// Atoms join the vault universe and popularity ranks are dealt out at random, so
    /// the busiest vaults are a mix of atoms, triples and counter triples.
    fn rank_terms(&mut self) {
        self.terms.extend(self.atoms.iter().map(|id| Term { id: *id, vault_type: 0 }));
        self.terms.shuffle(&mut self.rng);
        self.term_zipf = Some(zipf(self.terms.len(), self.config.zipf_exponent));
    }

    fn vault_op(&mut self) {
        self.chain.begin_tx(&mut self.rng);
        let redeem = self.rng.gen_bool(super::probability(self.config.redeem_ratio));
        match self.book.random_holding(&mut self.rng) {
            Some((position, shares)) if redeem => self.redeem(position, shares),
            _ => self.deposit(),
        }
    }

    fn vault_ref(&self, key: VaultKey) -> VaultRef {
        let term = &self.terms[key.term as usize];
        VaultRef { term: term.id, curve: key.curve, vault_type: term.vault_type }
    }

    fn deposit(&mut self) {
        let zipf = self.term_zipf.as_ref().expect("terms ranked before vault activity");
        let term = pick(zipf, &mut self.rng, self.terms.len()) as u32;
        let curve = if self.rng.gen_ratio(3, 4) { 1 } else { 2 };
        let key = PositionKey { vault: VaultKey { term, curve }, account: self.account() };
        // Mostly for oneself; sometimes on behalf of someone else.
        let sender = if self.rng.gen_ratio(9, 10) { key.account } else { self.account() };
        let assets = deposit_amount(&mut self.rng);
        let d = self.book.deposit(key, assets);
        let (sender, receiver) = (self.accounts[sender as usize].clone(), self.accounts[key.account as usize].clone());
        let event = events::Deposited {
            sender: &sender,
            receiver: &receiver,
            vault: self.vault_ref(key.vault),
            assets,
            assets_after_fees: d.assets_after_fees,
            shares: d.shares,
            total_shares: d.receiver_shares,
        };
        self.emit(EventType::Deposited, |rng, enc, tx| event.fields(rng, enc, tx));
        self.share_price_changed(key.vault, d.vault);
    }

    fn redeem(&mut self, key: PositionKey, balance: U256) {
        // A quarter of redeems close the position, so positions do drop back to zero.
        let shares = if balance == U256::from(1u64) || self.rng.gen_ratio(1, 4) {
            balance
        } else {
            (balance * U256::from(self.rng.gen_range(1u64..100)) / U256::from(100u64)).max(U256::from(1u64))
        };
        let r = self.book.redeem(key, shares);
        let receiver = if self.rng.gen_ratio(9, 10) { key.account } else { self.account() };
        let (sender, receiver) =
            (self.accounts[key.account as usize].clone(), self.accounts[receiver as usize].clone());
        let event = events::Redeemed {
            sender: &sender,
            receiver: &receiver,
            vault: self.vault_ref(key.vault),
            shares,
            total_shares: r.owner_shares,
            assets: r.assets,
            fees: r.fees,
        };
        self.emit(EventType::Redeemed, |rng, enc, tx| event.fields(rng, enc, tx));
        self.share_price_changed(key.vault, r.vault);
    }

    fn share_price_changed(&mut self, key: VaultKey, totals: super::vaults::VaultTotals) {
        let event = events::SharePriceChanged {
            vault: self.vault_ref(key),
            share_price: totals.share_price(),
            total_assets: totals.total_assets,
            total_shares: totals.total_shares,
        };
        self.emit(EventType::SharePriceChanged, |rng, enc, tx| event.fields(rng, enc, tx));
    }
}

/// 18-decimal amounts, log-uniform from ~0.0006 to ~7.9e10 tokens (2^96 wei); one in a
/// hundred far larger (up to 2^200) to exercise numbers past 128 bits.
fn deposit_amount(rng: &mut impl Rng) -> U256 {
    let bits = if rng.gen_ratio(1, 100) { rng.gen_range(97..=200) } else { rng.gen_range(50..=96) };
    encode::random_bits(rng, bits)
}

fn counter_id(term: &[u8; 32]) -> [u8; 32] {
    let hex_id = rps::event::counter_term_id(&format!("0x{}", hex::encode(term)));
    let mut id = [0u8; 32];
    hex::decode_to_slice(&hex_id[2..], &mut id).expect("counter_term_id returns 0x + 64 hex digits");
    id
}

fn zipf(n: usize, exponent: f64) -> Zipf<f64> {
    Zipf::new(n.max(1) as u64, exponent.max(0.0)).expect("n >= 1 and a non-negative exponent")
}

/// A 0-based rank below `n` (Zipf samples are 1-based floats).
fn pick(dist: &Zipf<f64>, rng: &mut impl Rng, n: usize) -> usize {
    (dist.sample(rng) as usize).saturating_sub(1).min(n - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(events: usize, atoms: usize, triples: usize) -> Plan {
        Plan::new(&WorkloadConfig { events, atoms, triples, ..Default::default() })
    }

    #[test]
    fn plan_adds_up_exactly() {
        for events in [0, 1, 2, 3, 7, 10, 999, 1000, 100_001] {
            for (atoms, triples) in [(0, 0), (1, 5), (3, 100), (2000, 5000)] {
                let p = plan(events, atoms, triples);
                assert_eq!(p.atoms + p.triples + 2 * p.vault_ops, events, "{events} {atoms} {triples}: {p:?}");
            }
        }
    }

    #[test]
    fn counter_id_matches_engine() {
        let term = [7u8; 32];
        let expected = rps::event::counter_term_id(&format!("0x{}", hex::encode(term)));
        assert_eq!(expected, format!("0x{}", hex::encode(counter_id(&term))));
    }
}
