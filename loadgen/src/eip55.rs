//! EIP-55 mixed-case checksum addresses, as wallets and most producers print them.

use sha3::{Digest, Keccak256};

/// The EIP-55 form (`0x` + mixed-case hex) of a 20-byte address.
pub fn checksum_address(address: &[u8; 20]) -> String {
    let lower = hex::encode(address);
    // The checksum hashes the lowercase hex *text*, not the bytes.
    let hash = Keccak256::digest(lower.as_bytes());
    let mut out = String::with_capacity(42);
    out.push_str("0x");
    for (i, c) in lower.chars().enumerate() {
        let nibble = (hash[i / 2] >> if i % 2 == 0 { 4 } else { 0 }) & 0x0f;
        out.push(if nibble >= 8 { c.to_ascii_uppercase() } else { c });
    }
    out
}

/// The EIP-55 form of an address given as hex in any case (`0x` optional); `None` if it
/// is not 20 bytes of hex.
pub fn to_checksum(address: &str) -> Option<String> {
    let digits = address.strip_prefix("0x").unwrap_or(address);
    let mut bytes = [0u8; 20];
    hex::decode_to_slice(digits, &mut bytes).ok()?;
    Some(checksum_address(&bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The test vectors listed in EIP-55 itself.
    const VECTORS: [&str; 8] = [
        // all caps
        "0x52908400098527886E0F7030069857D2E4169EE7",
        "0x8617E340B3D01FA5F11F306F4090FD50E238070D",
        // all lower
        "0xde709f2102306220921060314715629080e2fb77",
        "0x27b1fdb04752bbc536007a920d24acb045561c26",
        // normal
        "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        "0xfB6916095ca1df60bB79Ce92cE3Ea74c37c5d359",
        "0xdbF03B407c01E7cD3CBea99509d93f8DDDC8C6FB",
        "0xD1220A0cf47c7B9Be7A2E6BA89F429762e7b9aDb",
    ];

    #[test]
    fn matches_eip55_vectors() {
        for v in VECTORS {
            assert_eq!(to_checksum(&v.to_ascii_lowercase()).as_deref(), Some(v));
            assert_eq!(to_checksum(&v[2..].to_ascii_uppercase()).as_deref(), Some(v));
        }
    }

    #[test]
    fn rejects_non_addresses() {
        assert_eq!(to_checksum("0x1234"), None);
        assert_eq!(to_checksum("0xzz8400098527886E0F7030069857D2E4169EE7"), None);
    }
}
