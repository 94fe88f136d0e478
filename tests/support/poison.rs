//! A corpus of malformed and hostile messages, each with what the engine must do with it:
//! which dead letters (by the text of their reason) and how many good events it holds.
//!
//! Every case uses its own block number and transaction hashes, so the good events of one
//! case never collide with another's or with the traffic they are mixed into.

use serde_json::{json, Value};

pub struct Case {
    pub name: &'static str,
    /// The stream entry's field name (rindexer uses `payload`).
    pub field: &'static str,
    pub payload: Vec<u8>,
    /// One expected dead letter per element, by a fragment of its reason.
    pub dead: Vec<String>,
    /// Good events in the message, which must be applied.
    pub good: usize,
}

const ADDR: &str = "0x7fc73719c543e39651b0f6188f9b7341e163e7ce";

/// A term id unique to case `case`, event `i`.
pub fn term(case: usize, i: usize) -> String {
    format!("0x{:0>8x}{:0>56x}", 0xbad0_0000u32 + case as u32, i)
}

fn tx(case: usize, i: usize) -> Value {
    json!({
        "address": "0x6E35cF57A41fA15eA0EaE9C33e751b01A784Fe7e",
        "block_hash": format!("0x{:064x}", case),
        "block_number": 70_000_000 + case,
        "block_timestamp": "0x68b18674",
        "log_index": i,
        "network": "intuition",
        "transaction_hash": format!("0x{:0>8x}{:0>56x}", 0x7a00_0000u32 + case as u32, i),
        "transaction_index": 0,
    })
}

fn deposit(case: usize, i: usize) -> Value {
    json!({
        "sender": ADDR, "receiver": ADDR, "termId": term(case, i), "curveId": "1",
        "assets": "1000000000000000000", "assetsAfterFees": "990000000000000000",
        "shares": "5", "totalShares": "5", "vaultType": 0,
        "transaction_information": tx(case, i),
    })
}

fn atom(case: usize, data: &str) -> Value {
    json!({
        "creator": ADDR, "termId": term(case, 0), "atomData": data, "atomWallet": ADDR,
        "transaction_information": tx(case, 0),
    })
}

fn envelope(name: &str, data: Value) -> Value {
    json!({ "event_name": name, "event_signature_hash": "0x00", "network": "intuition",
            "block_number": 1, "message_id": "rindexer_stream__poison", "event_data": data })
}

fn bytes(v: Value) -> Vec<u8> {
    v.to_string().into_bytes()
}

/// A deposit of case `case` with `field` replaced by the raw JSON text `raw`.
fn deposit_with(case: usize, field: &str, raw: &str) -> Vec<u8> {
    let mut ev = deposit(case, 0);
    ev[field] = json!("__RAW__");
    bytes(envelope("Deposited", json!([ev]))).replace_raw(raw)
}

trait ReplaceRaw {
    fn replace_raw(self, raw: &str) -> Vec<u8>;
}

impl ReplaceRaw for Vec<u8> {
    fn replace_raw(self, raw: &str) -> Vec<u8> {
        String::from_utf8(self).unwrap().replace("\"__RAW__\"", raw).into_bytes()
    }
}

/// A deposit of case `case` whose transaction_information has `field` = raw JSON `raw`.
fn tx_with(case: usize, field: &str, raw: &str) -> Vec<u8> {
    let mut ev = deposit(case, 0);
    ev["transaction_information"][field] = json!("__RAW__");
    bytes(envelope("Deposited", json!([ev]))).replace_raw(raw)
}

fn without(case: usize, field: &str) -> Vec<u8> {
    let mut ev = deposit(case, 0);
    ev.as_object_mut().unwrap().remove(field);
    bytes(envelope("Deposited", json!([ev])))
}

pub fn corpus() -> Vec<Case> {
    let mut cases = Vec::new();
    let mut add = |name, payload: Vec<u8>, dead: Vec<&str>, good| {
        let dead = dead.into_iter().map(str::to_owned).collect();
        cases.push(Case { name, field: "payload", payload, dead, good });
    };
    let c = |n: usize| 1000 + n; // case numbers, for unique ids
    add("not JSON", b"this is not json".to_vec(), vec!["not valid JSON"], 0);
    let whole = bytes(envelope("Deposited", json!([deposit(c(1), 0)])));
    add("truncated", whole[..whole.len() / 2].to_vec(), vec!["not valid JSON"], 0);
    let deep = format!(r#"{{"event_name":"Deposited","event_data":{}{}}}"#, "[".repeat(200), "]".repeat(200));
    add("deeply nested", deep.into_bytes(), vec!["nested deeper than 64 levels"], 0);
    add("empty event_data", bytes(envelope("Deposited", json!([]))), vec!["`event_data` is an empty array"], 0);
    add("null event_data", bytes(envelope("Deposited", Value::Null)), vec!["`event_data` is null"], 0);
    add("event_data a string", bytes(envelope("Deposited", json!("x"))), vec!["neither an array nor an object"], 0);
    add(
        "no event_data",
        bytes(json!({ "event_name": "Deposited", "network": "intuition" })),
        vec!["missing field `event_data`"],
        0,
    );
    add("payload an array", b"[1,2,3]".to_vec(), vec!["payload is not a JSON object"], 0);
    add("payload a string", b"\"hello\"".to_vec(), vec!["payload is not a JSON object"], 0);
    add("no event_name", bytes(json!({ "event_data": [deposit(c(2), 0)] })), vec!["missing field `event_name`"], 0);
    add("empty event_name", bytes(envelope("", json!([deposit(c(3), 0)]))), vec!["`event_name` is empty"], 0);
    add(
        "event_name a number",
        bytes(json!({ "event_name": 7, "event_data": [deposit(c(4), 0)] })),
        vec!["`event_name` is not a string"],
        0,
    );
    add("event not an object", bytes(envelope("Deposited", json!([1]))), vec!["event is not a JSON object"], 0);
    add("missing termId", without(c(5), "termId"), vec!["missing field `termId`"], 0);
    add("null termId", deposit_with(c(6), "termId", "null"), vec!["missing field `termId`"], 0);
    add("termId a number", deposit_with(c(7), "termId", "12"), vec!["field `termId`: expected a string"], 0);
    add("termId too short", deposit_with(c(8), "termId", r#""0x1234""#), vec!["`termId`: expected 32 bytes of hex"], 0);
    let not_hex = format!(r#""0x{}""#, "zz".repeat(32));
    add("termId not hex", deposit_with(c(9), "termId", &not_hex), vec!["`termId`: expected 32 bytes of hex"], 0);
    add(
        "termId empty",
        deposit_with(c(10), "termId", r#""""#),
        vec![r#"`termId`: expected 32 bytes of hex, got """#],
        0,
    );
    add(
        "SQL in termId",
        deposit_with(c(11), "termId", r#""0x'; DROP TABLE position; --""#),
        vec!["`termId`: expected 32 bytes of hex, got \"0x'; DROP TABLE position; --\""],
        0,
    );
    let short = format!(r#""0x{}""#, "ab".repeat(19));
    add("address too short", deposit_with(c(12), "sender", &short), vec!["`sender`: expected 20 bytes of hex"], 0);
    add("negative amount", deposit_with(c(13), "assets", "-5"), vec!["`assets`: negative number -5"], 0);
    add(
        "negative amount string",
        deposit_with(c(14), "assets", r#""-5""#),
        vec![r#"`assets`: negative number "-5""#],
        0,
    );
    add("float amount", deposit_with(c(15), "shares", "1.5"), vec!["`shares`: 1.5 is not an integer"], 0);
    add("exponent amount", deposit_with(c(16), "shares", r#""1e18""#), vec![r#"`shares`: not an integer: "1e18""#], 0);
    let two_256 = r#""115792089237316195423570985008687907853269984665640564039457584007913129639936""#;
    add(
        "amount of 2^256",
        deposit_with(c(17), "totalShares", two_256),
        vec![format!("`totalShares`: number {two_256} does not fit in 256 bits").as_str()],
        0,
    );
    let big_hex = format!(r#""0x1{}""#, "0".repeat(64));
    add("hex amount over 256 bits", deposit_with(c(18), "assets", &big_hex), vec!["does not fit in 256 bits"], 0);
    // Read as its digits (simd-json holds 64 bits; the decoder quotes longer literals).
    add("integer literal beyond 64 bits", deposit_with(c(19), "assets", &"9".repeat(40)), vec![], 1);
    add(
        "integer literal beyond 256 bits",
        deposit_with(c(50), "assets", &"9".repeat(80)),
        vec!["`assets`: number \"99999"],
        0,
    );
    add("float 1.0", deposit_with(c(51), "shares", "1.0"), vec!["`shares`: 1.0 is not an integer"], 0);
    let twice = String::from_utf8(deposit_with(c(52), "assets", r#""7""#)).unwrap().replacen(
        r#""assets":"7""#,
        r#""assets":"7","assets":"8""#,
        1,
    );
    add("duplicate key in an event", twice.into_bytes(), vec!["duplicate key `assets`"], 0);
    let renamed = bytes(envelope("Deposited", json!([deposit(c(53), 0)])));
    let renamed = String::from_utf8(renamed).unwrap().replacen('{', r#"{"event_name":"Redeemed","#, 1);
    add("duplicate event_name", renamed.into_bytes(), vec!["duplicate key `event_name` in the message"], 0);
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(bytes(envelope("Deposited", json!([deposit(c(54), 0)]))));
    add("UTF-8 byte order mark", bom, vec!["byte order mark"], 0);
    add("empty amount", deposit_with(c(20), "assets", r#""""#), vec!["`assets`: empty number"], 0);
    add("amount a boolean", deposit_with(c(21), "assets", "true"), vec!["`assets`: expected an integer"], 0);
    add(
        "vaultType 7",
        deposit_with(c(22), "vaultType", "7"),
        vec!["`vaultType`: 7 is not 0 (atom), 1 (triple) or 2"],
        0,
    );
    add(
        "vaultType text",
        deposit_with(c(23), "vaultType", r#""abc""#),
        vec![r#"`vaultType`: not an integer: "abc""#],
        0,
    );
    add(
        "no transaction_information",
        without(c(24), "transaction_information"),
        vec!["missing field `transaction_information`"],
        0,
    );
    add(
        "transaction_information a string",
        deposit_with(c(25), "transaction_information", r#""tx""#),
        vec!["`transaction_information` is not an object"],
        0,
    );
    add("log_index a boolean", tx_with(c(26), "log_index", "true"), vec!["`log_index`: expected an integer"], 0);
    add(
        "block_number beyond 64 bits",
        tx_with(c(27), "block_number", r#""0xffffffffffffffffff""#),
        vec!["field `block_number`: 4722366482869645213695 does not fit in a signed 64-bit integer"],
        0,
    );
    add("timestamp in year 10000", tx_with(c(28), "block_timestamp", "253402300800"), vec!["past the year 9999"], 0);
    add(
        "NUL in network",
        tx_with(c(29), "network", r#""intui\u0000tion""#),
        vec!["`network` holds a NUL character"],
        0,
    );
    add(
        "atomData not hex",
        bytes(envelope("AtomCreated", json!([atom(c(30), "0xzz")]))),
        vec!["`atomData`: not hex bytes"],
        0,
    );
    let mut huge = bytes(envelope("Deposited", json!([deposit(c(31), 0)])));
    huge.extend(std::iter::repeat_n(b' ', 20 * 1024 * 1024));
    let too_big = format!("entry of {} bytes exceeds the 16777216-byte limit per entry", huge.len());
    add("20 MB payload", huge, vec![too_big.as_str()], 0);
    let mut bad_utf8 = bytes(envelope("Deposited", json!([deposit(c(32), 0)])));
    let at = bad_utf8.windows(4).position(|w| w == b"1000").unwrap();
    bad_utf8.splice(at..at, [0xff, 0xfe]);
    add("invalid UTF-8 in the payload", bad_utf8, vec!["not valid JSON"], 0);
    let mut unknown = deposit(c(33), 0);
    unknown["note"] = json!("\\ud800");
    // serde_json escapes the backslash; the raw text must hold the escape itself.
    let lone = bytes(envelope("Mystery", json!([unknown]))).to_vec();
    let lone = String::from_utf8(lone).unwrap().replace(r"\\ud800", r"\ud800").into_bytes();
    add("lone surrogate in an unknown event", lone, vec!["lone UTF-16 surrogate"], 0);
    let mut nul = deposit(c(34), 0);
    nul["note"] = json!("a\u{0}b");
    add("NUL in an unknown event", bytes(envelope("Mystery", json!([nul]))), vec!["NUL character"], 0);

    // Valid, if unusual: applied, nothing dead-lettered.
    let mut sql = deposit(c(40), 0);
    sql["comment"] = json!("Robert'); DROP TABLE atom; -- \"quoted\" $$ \\ backslash");
    add("SQL and quotes in an unknown event", bytes(envelope("Robert'); DROP TABLE term;--", json!([sql]))), vec![], 1);
    add("unknown event name", bytes(envelope("OwnershipTransferred", json!(deposit(c(41), 0)))), vec![], 1);
    add("atomData not UTF-8", bytes(envelope("AtomCreated", json!([atom(c(42), "0xff00fe41")]))), vec![], 1);
    add("atomData with a NUL byte", bytes(envelope("AtomCreated", json!([atom(c(43), "610062")]))), vec![], 1);
    add("atomData empty", bytes(envelope("AtomCreated", json!([atom(c(44), "0x")]))), vec![], 1);

    // Good and bad events in one message: the good ones land, each bad one is a dead letter.
    let mut bad_vault = deposit(c(50), 1);
    bad_vault["vaultType"] = json!(9);
    let mut bad_shares = deposit(c(50), 3);
    bad_shares["shares"] = json!(-1);
    let mixed = json!([deposit(c(50), 0), bad_vault, deposit(c(50), 2), bad_shares]);
    add(
        "mixed good and bad events",
        bytes(envelope("Deposited", mixed)),
        vec!["`vaultType`: 9 is not 0", "`shares`: negative number -1"],
        2,
    );

    cases.push(Case {
        name: "no payload field",
        field: "body",
        payload: b"{}".to_vec(),
        dead: vec![r#"no payload field (expected one of payload, event_data, data; found ["body"])"#.to_owned()],
        good: 0,
    });
    cases
}
