//! Adversarial random workloads for the equivalence tests.
//!
//! Unlike loadgen's realistic traffic, this one packs a few terms, accounts and curves
//! into many events so that every last-write-wins and running-sum rule is hit from all
//! sides; then it shuffles delivery, repacks events into messages of random sizes,
//! redelivers some of them inside different messages and scatters messages over streams
//! (the engine must route by `event_name`). Values are random, not economically
//! consistent: the reference views define the expected result whatever they are.

use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha8Rng;
use ruint::aliases::U256;
use serde_json::{json, Value};

#[derive(Clone, Debug)]
pub struct Params {
    pub seed: u64,
    pub events: usize,
    /// Events of one type packed per message: 1..=max.
    pub max_per_message: usize,
    /// Share of events delivered a second time, repacked into other messages.
    pub duplicate_rate: f64,
    /// Number of streams messages are scattered over.
    pub streams: usize,
}

struct Ev {
    name: &'static str,
    body: Value,
}

/// The workload as (stream index, payload) in delivery order, and the number of distinct events.
pub fn messages(p: &Params) -> (Vec<(usize, String)>, usize) {
    let mut rng = ChaCha8Rng::seed_from_u64(p.seed);
    let mut events = chain(&mut rng, p.events);
    events.shuffle(&mut rng);
    let mut out = pack(&mut rng, &events, p);
    let redelivered: Vec<&Ev> = events.iter().filter(|_| rng.gen_bool(p.duplicate_rate)).collect();
    for m in pack(&mut rng, &redelivered, p) {
        let at = rng.gen_range(0..=out.len());
        out.insert(at, m);
    }
    (out, events.len())
}

fn pack<E: std::borrow::Borrow<Ev>>(rng: &mut ChaCha8Rng, events: &[E], p: &Params) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut open: Vec<(&'static str, Vec<&Value>, usize)> = Vec::new();
    for e in events {
        let e = e.borrow();
        let i = match open.iter().position(|(n, _, _)| *n == e.name) {
            Some(i) => i,
            None => {
                open.push((e.name, Vec::new(), rng.gen_range(1..=p.max_per_message)));
                open.len() - 1
            }
        };
        open[i].1.push(&e.body);
        if open[i].1.len() >= open[i].2 {
            let (name, bodies, _) = open.swap_remove(i);
            out.push(message(rng, name, &bodies, p.streams));
        }
    }
    for (name, bodies, _) in open {
        out.push(message(rng, name, &bodies, p.streams));
    }
    out
}

fn message(rng: &mut ChaCha8Rng, name: &str, bodies: &[&Value], streams: usize) -> (usize, String) {
    let data = if bodies.len() == 1 && rng.gen_bool(0.5) { bodies[0].clone() } else { json!(bodies) };
    let payload = json!({
        "event_name": name, "event_signature_hash": "0x00", "network": "intuition",
        "block_number": 0, "message_id": format!("rindexer_stream__{}", rng.gen::<u32>()), "event_data": data,
    });
    (rng.gen_range(0..streams), payload.to_string())
}

/// The terms and accounts a workload's events draw from: few, so that they collide.
pub struct World {
    atoms: Vec<String>,
    triples: Vec<(String, [String; 3])>,
    vault_terms: Vec<String>,
    accounts: Vec<String>,
}

impl World {
    /// A world sized for about `n` events.
    pub fn new(rng: &mut ChaCha8Rng, n: usize) -> World {
        let atoms: Vec<String> = (0..2 + n / 40).map(|_| hex32(rng)).collect();
        let triples: Vec<(String, [String; 3])> =
            (0..1 + n / 60).map(|_| (hex32(rng), [pick(rng, &atoms), pick(rng, &atoms), pick(rng, &atoms)])).collect();
        let mut vault_terms = atoms.clone();
        for (t, _) in &triples {
            vault_terms.push(t.clone());
            vault_terms.push(rps::event::counter_term_id(t).to_string());
        }
        vault_terms.push(hex32(rng)); // a vault whose term never gets an atom or triple
        let accounts: Vec<String> = (0..4).map(|_| hex_n(rng, 20)).collect();
        World { atoms, triples, vault_terms, accounts }
    }

    /// One random event's name and fields (no `transaction_information`).
    pub fn event(&self, rng: &mut ChaCha8Rng) -> (&'static str, Value) {
        match rng.gen_range(0..100) {
            0..=9 => ("AtomCreated", atom(rng, &self.atoms, &self.accounts)),
            10..=17 => ("TripleCreated", triple(rng, &self.triples, &self.accounts)),
            18..=52 => ("Deposited", vault_event(rng, "Deposited", &self.vault_terms, &self.accounts)),
            53..=72 => ("Redeemed", vault_event(rng, "Redeemed", &self.vault_terms, &self.accounts)),
            73..=95 => ("SharePriceChanged", vault_event(rng, "SharePriceChanged", &self.vault_terms, &self.accounts)),
            _ => ("OwnershipTransferred", json!({ "newOwner": mixed_case(rng, &self.accounts[0]) })),
        }
    }
}

/// The chain: `n` events with unique (block, log_index), in chain order.
fn chain(rng: &mut ChaCha8Rng, n: usize) -> Vec<Ev> {
    let world = World::new(rng, n);
    (0..n)
        .map(|i| {
            let tx = tx_info(rng, 1_000 + (i / 4) as u64, (i % 4) as u64);
            let (name, mut body) = world.event(rng);
            body["transaction_information"] = tx;
            Ev { name, body }
        })
        .collect()
}

fn atom(rng: &mut ChaCha8Rng, atoms: &[String], accounts: &[String]) -> Value {
    let data: Vec<u8> = match rng.gen_range(0..4) {
        0 => vec![0xff, 0x00, 0x41], // not UTF-8: kept in raw_data
        1 => b"a\0b".to_vec(),       // NUL: kept in raw_data
        _ => format!("ipfs://bafy{}", rng.gen::<u32>()).into_bytes(),
    };
    let prefix = if rng.gen_bool(0.5) { "0x" } else { "" };
    let wallet = hex_n(rng, 20);
    let wallet = mixed_case(rng, &wallet);
    json!({
        "creator": account(rng, accounts),
        "termId": pick(rng, atoms),
        "atomData": format!("{prefix}{}", hex::encode(data)),
        "atomWallet": wallet,
    })
}

fn triple(rng: &mut ChaCha8Rng, triples: &[(String, [String; 3])], accounts: &[String]) -> Value {
    let (term, [s, p, o]) = &triples[rng.gen_range(0..triples.len())];
    json!({
        "creator": account(rng, accounts),
        "termId": mixed_case(rng, term), "subjectId": s, "predicateId": p, "objectId": o,
    })
}

fn vault_event(rng: &mut ChaCha8Rng, name: &str, terms: &[String], accounts: &[String]) -> Value {
    let term = pick(rng, terms);
    let curve = U256::from(rng.gen_range(1u64..=2));
    let curve = uint(rng, curve);
    let vault_type = U256::from(rng.gen_range(0u64..=2));
    let vault_type = uint(rng, vault_type);
    let mut amount = || amount(rng);
    let mut v = match name {
        "Deposited" => json!({
            "assets": amount(), "assetsAfterFees": amount(), "shares": amount(), "totalShares": amount(),
        }),
        "Redeemed" => json!({
            "shares": amount(), "totalShares": amount(), "assets": amount(), "fees": amount(),
        }),
        _ => json!({ "sharePrice": amount(), "totalAssets": amount(), "totalShares": amount() }),
    };
    v["termId"] = json!(term);
    v["curveId"] = curve;
    v["vaultType"] = vault_type;
    if name != "SharePriceChanged" {
        v["sender"] = json!(account(rng, accounts));
        v["receiver"] = json!(account(rng, accounts));
    }
    v
}

/// Zero often (positions open and close), otherwise anything from 1 to ~2^255.
fn amount(rng: &mut ChaCha8Rng) -> Value {
    let v = match rng.gen_range(0..10) {
        0..=2 => U256::ZERO,
        3..=6 => U256::from(rng.gen_range(1u64..1_000)),
        7..=8 => U256::from(rng.gen::<u64>()) * U256::from(1_000_000_000_000u64),
        _ => U256::from_limbs([rng.gen(), rng.gen(), rng.gen(), rng.gen::<u64>() >> 1]),
    };
    uint(rng, v)
}

/// A uint in one of the encodings producers use.
fn uint(rng: &mut ChaCha8Rng, v: U256) -> Value {
    match (rng.gen_range(0..3), u64::try_from(v)) {
        (0, Ok(small)) => json!(small),
        (1, _) => json!(format!("{v:#x}")),
        _ => json!(v.to_string()),
    }
}

/// A `transaction_information` object in random encodings, with a random block hash.
pub fn tx_info(rng: &mut ChaCha8Rng, block: u64, log: u64) -> Value {
    let ts = if rng.gen_bool(0.2) { Value::Null } else { uint(rng, U256::from(1_750_000_000 + block * 2)) };
    json!({
        "address": mixed_case(rng, "0x6e35cf57a41fa15ea0eae9c33e751b01a784fe7e"),
        "block_hash": hex32(rng), "block_number": uint(rng, U256::from(block)), "block_timestamp": ts,
        "log_index": uint(rng, U256::from(log)), "network": "intuition",
        "transaction_hash": hex32(rng), "transaction_index": uint(rng, U256::from(log)), "chain_id": 1155,
    })
}

pub fn hex32(rng: &mut ChaCha8Rng) -> String {
    hex_n(rng, 32)
}

fn hex_n(rng: &mut ChaCha8Rng, bytes: usize) -> String {
    let b: Vec<u8> = (0..bytes).map(|_| rng.gen()).collect();
    format!("0x{}", hex::encode(b))
}

fn account(rng: &mut ChaCha8Rng, accounts: &[String]) -> String {
    let a = pick(rng, accounts);
    mixed_case(rng, &a)
}

fn pick(rng: &mut ChaCha8Rng, from: &[String]) -> String {
    from[rng.gen_range(0..from.len())].clone()
}

/// Random letter case after the `0x`, as EIP-55 checksummed addresses arrive.
fn mixed_case(rng: &mut ChaCha8Rng, s: &str) -> String {
    let (prefix, rest) = s.split_at(2);
    let body: String = rest.chars().map(|c| if rng.gen_bool(0.5) { c.to_ascii_uppercase() } else { c }).collect();
    format!("{prefix}{body}")
}
