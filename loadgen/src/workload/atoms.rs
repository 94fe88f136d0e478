//! Atom payloads (`atomData`) in the shapes seen on Intuition: IPFS URIs, JSON-LD things,
//! plain labels, CAIP-10 account ids, plus a few byte strings that are not storable as
//! text (invalid UTF-8, NUL bytes) which the engine must keep as raw bytes.

use rand::Rng;

use crate::eip55::checksum_address;

/// The first atoms become the few predicates most triples use.
pub(crate) const PREDICATES: [&str; 8] =
    ["has tag", "is", "follows", "likes", "is a", "created by", "recommends", "is related to"];

const WORDS: [&str; 12] = [
    "ethereum",
    "café",
    "knowledge",
    "graph",
    "trust",
    "ユーザー",
    "protocol",
    "agent",
    "🚀 launch",
    "data",
    "rust",
    "naïve",
];

/// Data for atom number `i`; `i` is mixed in so every atom's data, hence id, is distinct.
pub(crate) fn atom_data(rng: &mut impl Rng, i: usize) -> Vec<u8> {
    if let Some(data) = predicate_data(i) {
        return data;
    }
    match rng.gen_range(0..100) {
        0..=44 => ipfs_uri(rng).into_bytes(),
        45..=69 => json_thing(rng, i).into_bytes(),
        70..=84 => format!("{} {i}", WORDS[rng.gen_range(0..WORDS.len())]).into_bytes(),
        85..=94 => format!("caip10:eip155:1:{}", checksum_address(&rng.gen())).into_bytes(),
        95..=97 => invalid_utf8(rng, i),
        _ => with_nul(i),
    }
}

/// Data of atom number `i` if it is one of the predicates: fixed, whatever the random stream.
pub(crate) fn predicate_data(i: usize) -> Option<Vec<u8>> {
    let p = PREDICATES.get(i)?;
    Some(format!(r#"{{"@context":"https://schema.org","@type":"DefinedTerm","name":"{p}"}}"#).into_bytes())
}

fn ipfs_uri(rng: &mut impl Rng) -> String {
    const BASE32: &[u8] = b"abcdefghijklmnopqrstuvwxyz234567";
    let cid: String = (0..52).map(|_| BASE32[rng.gen_range(0..32)] as char).collect();
    format!("ipfs://bafkrei{cid}")
}

fn json_thing(rng: &mut impl Rng, i: usize) -> String {
    let word = WORDS[rng.gen_range(0..WORDS.len())];
    format!(
        r#"{{"@context":"https://schema.org","@type":"Thing","name":"{word} #{i}","description":"A \"quoted\" {word}","url":"https://example.com/things/{i}"}}"#
    )
}

fn invalid_utf8(rng: &mut impl Rng, i: usize) -> Vec<u8> {
    let mut data = vec![0xff, 0xfe, 0xc3];
    data.extend_from_slice(&(i as u64).to_be_bytes());
    data.extend_from_slice(&rng.gen::<[u8; 8]>());
    data
}

/// Valid UTF-8 that PostgreSQL `TEXT` still cannot hold.
fn with_nul(i: usize) -> Vec<u8> {
    format!("label\0{i}").into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn mixes_text_and_binary_data() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let data: Vec<Vec<u8>> = (0..2000).map(|i| atom_data(&mut rng, i)).collect();
        let binary = data.iter().filter(|d| rps::event::utf8_text(d).is_none()).count();
        assert!(binary > 10 && binary < 200, "{binary} atoms without a text form");
        let distinct: std::collections::HashSet<_> = data.iter().collect();
        assert_eq!(distinct.len(), data.len());
    }
}
