use super::*;
use crate::event::encode::encode_payload;
use crate::event::numeric::parse_u256;

const TERM: &str = "0x0173745f9e0d54254f4f81b02495da1716055583a1cbb7236ce8571befca6c3a";
const TX: &str = "0x6a002d6562ccf670663fbdfbcff79c40d286a6a75635823a662b78f5608162c3";
const BLOCK_HASH: &str = "0x2b070068a071fdef3a2612a68ff21eaf33974a57cd4727ec14ff1df2ee4f659c";

/// A transaction_information object with the given encodings spliced in verbatim.
fn tx_info(block: &str, log: &str, index: &str, ts: &str) -> String {
    format!(
        r#"{{"address":"0x6E35cF57A41fA15eA0EaE9C33e751b01A784Fe7e","block_hash":"{BLOCK_HASH}","block_number":{block},
            "block_timestamp":{ts},"log_index":{log},"network":"intuition","transaction_hash":"{TX}",
            "transaction_index":{index},"chain_id":1155}}"#
    )
}

fn envelope(name: &str, events: &str) -> Vec<u8> {
    format!(
        r#"{{"event_name":"{name}","network":"intuition","block_number":0,"message_id":"m","event_data":{events}}}"#
    )
    .into_bytes()
}

fn one(name: &str, fields: &str) -> Event {
    let ev = format!(r#"{{{fields},"transaction_information":{}}}"#, tx_info("8092574", "\"0x1a\"", "3", "null"));
    let d = decode_payload(&envelope(name, &ev)).expect("payload decodes");
    assert!(d.failures.is_empty(), "unexpected failures: {:?}", d.failures);
    assert_eq!(d.events.len(), 1);
    d.events.into_iter().next().unwrap()
}

fn failure(name: &str, fields: &str) -> String {
    let ev = format!(r#"{{{fields},"transaction_information":{}}}"#, tx_info("1", "0", "0", "null"));
    let d = decode_payload(&envelope(name, &ev)).expect("envelope decodes");
    assert!(d.events.is_empty(), "expected the event to be rejected");
    d.failures[0].error.0.clone()
}

fn n(v: u64) -> Numeric {
    Numeric::from(v)
}

#[test]
fn atom_created() {
    let e = one(
        "AtomCreated",
        &format!(
            r#""creator":"0xB35331ceaf2ED9Dd87E355B26210B784BAa1c6f1","termId":"{TERM}","atomData":"0x697066733a2f2f78","atomWallet":"0x7d411fab9fb932d4f039772216ff82e389e3995a""#
        ),
    );
    let EventKind::AtomCreated(a) = e.kind else { panic!("wrong kind") };
    assert_eq!(a.creator, "0xb35331ceaf2ed9dd87e355b26210b784baa1c6f1");
    assert_eq!(a.term_id, TERM);
    assert_eq!(a.atom_data, b"ipfs://x");
    assert_eq!(a.atom_data_text.as_deref(), Some("ipfs://x"));
    assert_eq!(e.tx.log_index, 26);
    assert_eq!(e.tx.block_number, 8092574);
    assert_eq!(e.tx.block_timestamp, None);
    assert_eq!(e.tx.address, "0x6e35cf57a41fa15ea0eae9c33e751b01a784fe7e");
}

#[test]
fn atom_data_without_prefix_invalid_utf8_and_nul() {
    let base = r#""creator":"0xb35331ceaf2ed9dd87e355b26210b784baa1c6f1","atomWallet":"0x7d411fab9fb932d4f039772216ff82e389e3995a""#;
    let text = one("AtomCreated", &format!(r#"{base},"termId":"{TERM}","atomData":"7b7d""#));
    let EventKind::AtomCreated(a) = text.kind else { panic!() };
    assert_eq!(a.atom_data_text.as_deref(), Some("{}"));
    let invalid = one("AtomCreated", &format!(r#"{base},"termId":"{TERM}","atomData":"0xff00fe""#));
    let EventKind::AtomCreated(a) = invalid.kind else { panic!() };
    assert_eq!((a.atom_data, a.atom_data_text), (vec![0xff, 0x00, 0xfe], None));
    let nul = one("AtomCreated", &format!(r#"{base},"termId":"{TERM}","atomData":"0x610062""#));
    let EventKind::AtomCreated(a) = nul.kind else { panic!() };
    assert_eq!(a.atom_data_text, None, "NUL bytes cannot be TEXT");
}

#[test]
fn triple_created_derives_counter_term() {
    let e = one(
        "TripleCreated",
        &format!(
            r#""creator":"0xc986fa9fe66471833367433467c3b9fe85fdadc4","termId":"{TERM}","subjectId":"{TERM}","predicateId":"{TERM}","objectId":"{TERM}""#
        ),
    );
    let EventKind::TripleCreated(t) = e.kind else { panic!() };
    assert_eq!(t.counter_term_id, counter_term_id(TERM));
}

#[test]
fn deposited_in_every_number_encoding() {
    let e = one(
        "Deposited",
        &format!(
            r#""sender":"0x7fc73719c543e39651b0f6188f9b7341e163e7ce","receiver":"0x7fC73719C543e39651B0f6188f9B7341E163E7cE",
               "termId":"{TERM}","curveId":"1","assets":"53119660701583624814","assetsAfterFees":"0x2d9cfc177e818f015",
               "shares":1000,"totalShares":"0x0","vaultType":"0x1""#
        ),
    );
    let EventKind::Deposited(d) = e.kind else { panic!() };
    assert_eq!(d.receiver, "0x7fc73719c543e39651b0f6188f9b7341e163e7ce");
    assert_eq!(d.curve_id, n(1));
    assert_eq!(d.assets.to_string(), "53119660701583624814");
    assert_eq!(d.assets_after_fees, Numeric(parse_u256("52588464094567788565").unwrap()));
    assert_eq!(d.shares, n(1000));
    assert_eq!(d.total_shares, n(0));
    assert_eq!(d.vault_type, 1);
}

#[test]
fn redeemed_and_share_price_changed() {
    let r = one(
        "Redeemed",
        &format!(
            r#""sender":"0x7fc73719c543e39651b0f6188f9b7341e163e7ce","receiver":"0x1e01b04f41f1fc30d89bacfa3be14460cc477e6c",
               "termId":"{TERM}","curveId":2,"shares":"5","totalShares":"7","assets":"0xa","fees":"1","vaultType":2"#
        ),
    );
    let EventKind::Redeemed(r) = r.kind else { panic!() };
    assert_eq!(
        (r.curve_id, r.shares, r.total_shares, r.assets, r.fees, r.vault_type),
        (n(2), n(5), n(7), n(10), n(1), 2)
    );
    let s = one(
        "SharePriceChanged",
        &format!(
            r#""termId":"{TERM}","curveId":"0x2","sharePrice":"1000000000000000000","totalAssets":"115792089237316195423570985008687907853269984665640564039457584007913129639935","totalShares":"3","vaultType":0"#
        ),
    );
    let EventKind::SharePriceChanged(s) = s.kind else { panic!() };
    assert_eq!(s.total_assets, Numeric(ruint::aliases::U256::MAX));
    assert_eq!(s.share_price.to_string(), "1000000000000000000");
}

#[test]
fn tx_info_encodings() {
    for (block, log, index, ts, want_ts) in [
        ("8092571", "\"0x1a\"", "3", "\"0x68b18674\"", Some(0x68b18674)),
        ("\"0x7b7b9b\"", "26", "\"3\"", "1750085142", Some(1750085142)),
        ("\"8092571\"", "\"26\"", "\"0x3\"", "\"1750085142\"", Some(1750085142)),
    ] {
        let ev = format!(
            r#"{{"termId":"{TERM}","curveId":1,"sharePrice":1,"totalAssets":1,"totalShares":1,"vaultType":0,"transaction_information":{}}}"#,
            tx_info(block, log, index, ts)
        );
        let d = decode_payload(&envelope("SharePriceChanged", &ev)).unwrap();
        let e = &d.events[0];
        assert_eq!((e.tx.block_number, e.tx.log_index, e.tx.transaction_index), (8092571, 26, 3));
        assert_eq!(e.tx.block_timestamp, want_ts);
    }
}

#[test]
fn event_data_as_single_object_or_array() {
    let ev = format!(
        r#"{{"termId":"{TERM}","curveId":1,"sharePrice":1,"totalAssets":1,"totalShares":1,"vaultType":0,"transaction_information":{}}}"#,
        tx_info("1", "0", "0", "null")
    );
    assert_eq!(decode_payload(&envelope("SharePriceChanged", &ev)).unwrap().events.len(), 1);
    let two = format!("[{ev},{}]", ev.replace(r#""log_index":0"#, r#""log_index":1"#));
    assert_eq!(decode_payload(&envelope("SharePriceChanged", &two)).unwrap().events.len(), 2);
}

#[test]
fn unknown_events_are_kept_whole() {
    let ev = format!(
        r#"{{"owner":"0xabc","nested":{{"a":[1,2]}},"transaction_information":{}}}"#,
        tx_info("5", "1", "0", "null")
    );
    let d = decode_payload(&envelope("OwnershipTransferred", &ev)).unwrap();
    let EventKind::Generic(g) = &d.events[0].kind else { panic!() };
    assert_eq!(g.event_name, "OwnershipTransferred");
    let back: serde_json::Value = serde_json::from_str(&g.event_data).unwrap();
    assert_eq!(back["nested"]["a"][1], 2);
}

#[test]
fn every_sample_message_decodes() {
    let samples = include_str!("../../../../samples/mixed-encodings.jsonl");
    let mut events = 0;
    for line in samples.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let d = decode_payload(v["payload"].to_string().as_bytes()).unwrap();
        assert!(d.failures.is_empty(), "{:?}", d.failures);
        events += d.events.len();
    }
    assert!(events >= 10, "the samples hold {events} events");
}

#[test]
fn rejects_bad_fields_with_precise_reasons() {
    let addr = "0x7fc73719c543e39651b0f6188f9b7341e163e7ce";
    let dep = |term: &str, assets: &str, vt: &str| {
        format!(
            r#""sender":"{addr}","receiver":"{addr}","termId":{term},"curveId":1,"assets":{assets},"assetsAfterFees":1,"shares":1,"totalShares":1,"vaultType":{vt}"#
        )
    };
    let t = format!("\"{TERM}\"");
    assert!(failure("Deposited", &dep("\"0x1234\"", "1", "0")).contains("`termId`: expected 32 bytes of hex"));
    assert!(failure("Deposited", &dep(&format!("\"{}zz\"", &TERM[..64]), "1", "0")).contains("`termId`"));
    assert!(failure("Deposited", &dep(&t, "\"-5\"", "0")).contains("`assets`: negative number"));
    assert!(failure("Deposited", &dep(&t, "-5", "0")).contains("`assets`: negative number"));
    assert!(failure("Deposited", &dep(&t, "1.5", "0")).contains("`assets`: 1.5 is not an integer"));
    assert!(failure("Deposited", &dep(&t, "\"1e18\"", "0")).contains("not an integer"));
    assert!(failure("Deposited", &dep(&t, "\"\"", "0")).contains("`assets`: empty number"));
    assert!(failure("Deposited", &dep(&t, "true", "0")).contains("`assets`: expected an integer"));
    let too_big = format!("\"0x1{}\"", "0".repeat(64));
    assert!(failure("Deposited", &dep(&t, &too_big, "0")).contains("does not fit in 256 bits"));
    assert!(failure("Deposited", &dep(&t, "1", "7")).contains("`vaultType`: 7 is not 0"));
    assert!(failure("Deposited", &dep(&t, "null", "0")).contains("missing field `assets`"));
}

#[test]
fn rejects_bad_envelopes() {
    let reason = |raw: &[u8]| decode_payload(raw).unwrap_err().0;
    assert!(reason(b"not json").starts_with("not valid JSON"));
    assert!(reason(b"[1,2]").contains("not a JSON object"));
    assert!(reason(br#"{"event_data":[]}"#).contains("missing field `event_name`"));
    assert!(reason(br#"{"event_name":"Deposited","event_data":[]}"#).contains("empty array"));
    assert!(reason(br#"{"event_name":"Deposited","event_data":null}"#).contains("null"));
    assert!(reason(br#"{"event_name":"Deposited","event_data":"x"}"#).contains("neither an array nor an object"));
    assert!(reason(br#"{"event_name":"Deposited"}"#).contains("missing field `event_data`"));
    let deep = format!(r#"{{"event_name":"X","event_data":{}1{}}}"#, "[".repeat(100), "]".repeat(100));
    assert!(reason(deep.as_bytes()).contains("nested deeper"));
    assert!(reason(&[0xff, 0xfe, b'{', b'}']).starts_with("not valid JSON"));
}

#[test]
fn failed_event_payload_replays_alone() {
    let good = format!(
        r#"{{"termId":"{TERM}","curveId":1,"sharePrice":1,"totalAssets":1,"totalShares":1,"vaultType":0,"transaction_information":{}}}"#,
        tx_info("1", "0", "0", "null")
    );
    let bad = good.replace(r#""vaultType":0"#, r#""vaultType":9"#).replace(r#""log_index":0"#, r#""log_index":1"#);
    let d = decode_payload(&envelope("SharePriceChanged", &format!("[{good},{bad}]"))).unwrap();
    assert_eq!((d.events.len(), d.failures.len()), (1, 1));
    // The dead-letter payload is a message of its own holding just the bad event.
    let replay = decode_payload(d.failures[0].payload.as_bytes()).unwrap();
    assert_eq!(replay.events.len(), 0);
    assert_eq!(replay.failures.len(), 1);
}

/// Vector computed independently with pycryptodome's Keccak-256 (not SHA3-256):
/// `k = keccak256(b"COUNTER_SALT")` = e7cbc1eb…dada12, then `keccak256(k || term_id)`.
#[test]
fn counter_term_id_matches_independent_keccak() {
    assert_eq!(counter_term_id(TERM), "0x452cf1485b1f304b536ea7b30c594c9dbd2dc38bd497f8309b23ae055ad929b3");
    assert_eq!(
        counter_term_id(&format!("0x{}", "00".repeat(32))),
        "0xb94a30db6b8cb4d6e5b5d8b18aee1088680ffa8a61b3bfb65b6aef926e4aaf51"
    );
    // Keccak-256, not NIST SHA3-256: the empty-input digest tells them apart.
    assert_eq!(
        ::hex::encode(Keccak256::digest(b"")),
        "c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470"
    );
}

#[test]
fn rejects_what_postgres_text_cannot_store() {
    let ev = format!(r#"{{"note":"a\u0000b","transaction_information":{}}}"#, tx_info("5", "1", "0", "null"));
    let d = decode_payload(&envelope("Custom", &ev)).unwrap();
    assert!(d.failures[0].error.0.contains("NUL"));
    let far = format!(r#"{{"note":"x","transaction_information":{}}}"#, tx_info("5", "1", "0", "99999999999999"));
    let d = decode_payload(&envelope("Custom", &far)).unwrap();
    assert!(d.failures[0].error.0.contains("year 9999"));
}

/// simd-json decodes a lone surrogate escape to a NUL character; it must be named for what
/// it is, and a valid surrogate pair must still pass.
#[test]
fn lone_surrogate_escapes_are_rejected_by_name() {
    let with = |s: &str| {
        let ev = format!(r#"{{"note":"{s}","transaction_information":{}}}"#, tx_info("5", "1", "0", "null"));
        decode_payload(&envelope("Custom", &ev))
    };
    let e = with(r"a\ud800b").unwrap_err().0;
    assert!(e.contains(r"\ud800 at byte") && e.contains("lone UTF-16 surrogate"), "{e}");
    assert!(with(r"\udc00").unwrap_err().0.contains(r"\udc00"));
    let d = with(r"\ud83d\ude00 and \\ud800 (an escaped backslash)").unwrap();
    let EventKind::Generic(g) = &d.events[0].kind else { panic!("generic") };
    assert!(g.event_data.contains('😀'), "{}", g.event_data);
}

/// A deposit's fields with `assets` given as the raw JSON `assets`.
fn deposit_fields(assets: &str) -> String {
    format!(
        r#""sender":"0x7fc73719c543e39651b0f6188f9b7341e163e7ce","receiver":"0x7fc73719c543e39651b0f6188f9b7341e163e7ce",
           "termId":"{TERM}","curveId":1,"assets":{assets},"assetsAfterFees":"1","shares":"1","totalShares":"1","vaultType":0"#
    )
}

/// Two deposit events in one message, with `assets` raw JSON `first` and `second`.
fn two_deposits(first: &str, second: &str) -> Decoded {
    let ev = |assets: &str, log: &str| {
        format!(r#"{{{},"transaction_information":{}}}"#, deposit_fields(assets), tx_info("9", log, "0", "null"))
    };
    decode_payload(&envelope("Deposited", &format!("[{},{}]", ev(first, "1"), ev(second, "2"))))
        .expect("message decodes")
}

#[test]
fn integer_literals_beyond_64_bits_are_read_as_their_digits() {
    let forty_nines = "9".repeat(40);
    let d = two_deposits(&forty_nines, "5");
    let EventKind::Deposited(dep) = &d.events[0].kind else { panic!("a deposit") };
    assert_eq!(dep.assets.to_string(), forty_nines);
    assert!(d.failures.is_empty());
    // Beyond 256 bits: that event alone is refused, its neighbour is kept.
    let d = two_deposits(&"9".repeat(80), "5");
    assert_eq!(d.events.len(), 1);
    assert!(d.failures[0].error.0.contains("does not fit in 256 bits"), "{}", d.failures[0].error.0);
    // Quoting keeps the rest of the payload byte for byte (long numbers inside strings too).
    let long_in_text = format!(r#""note {}""#, "1".repeat(30));
    let d = decode_payload(&envelope(
        "Custom",
        &format!(
            r#"{{"n":{},"s":{long_in_text},"transaction_information":{}}}"#,
            "7".repeat(25),
            tx_info("5", "1", "0", "null")
        ),
    ))
    .unwrap();
    let EventKind::Generic(g) = &d.events[0].kind else { panic!("generic") };
    assert!(
        g.event_data.contains(&format!(r#""n":"{}""#, "7".repeat(25))) && g.event_data.contains(&long_in_text),
        "{}",
        g.event_data
    );
}

#[test]
fn duplicate_keys_are_refused_where_they_are() {
    // In an event: that event is dead-lettered, naming the key; its neighbour is applied.
    let ev = format!(
        r#"{{{},"assets":"2","transaction_information":{}}}"#,
        deposit_fields("1"),
        tx_info("9", "1", "0", "null")
    );
    let good = format!(r#"{{{},"transaction_information":{}}}"#, deposit_fields("1"), tx_info("9", "2", "0", "null"));
    let d = decode_payload(&envelope("Deposited", &format!("[{ev},{good}]"))).unwrap();
    assert_eq!((d.events.len(), d.failures[0].error.0.as_str()), (1, "duplicate key `assets`"));
    // Inside transaction_information too.
    let tx = tx_info("9", "1", "0", "null").replacen('{', r#"{"log_index":"0x5","#, 1);
    let d = decode_payload(&envelope(
        "Deposited",
        &format!(r#"[{{{},"transaction_information":{tx}}}]"#, deposit_fields("1")),
    ))
    .unwrap();
    assert_eq!(d.failures[0].error.0, "duplicate key `log_index`");
    // In the envelope: nothing in it can be trusted.
    let twice = String::from_utf8(envelope("Deposited", &format!("[{good}]"))).unwrap().replacen(
        '{',
        r#"{"event_name":"Redeemed","#,
        1,
    );
    assert_eq!(decode_payload(twice.as_bytes()).unwrap_err().0, "duplicate key `event_name` in the message");
}

#[test]
fn reasons_name_what_was_seen() {
    let one_point_zero = failure("Deposited", &deposit_fields("1.0"));
    assert!(one_point_zero.contains("`assets`: 1.0 is not an integer"), "{one_point_zero}");
    let mut bom = vec![0xEF, 0xBB, 0xBF];
    bom.extend(envelope("Deposited", "[]"));
    let e = decode_payload(&bom).unwrap_err().0;
    assert!(e.contains("byte order mark"), "{e}");
}

/// The payload a dead letter gets for an event PostgreSQL refused decodes back to the
/// same event, so replaying it is faithful.
#[test]
fn encoded_events_decode_back_to_themselves() {
    let mut events = Vec::new();
    for line in include_str!("../../../../samples/mixed-encodings.jsonl").lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        events.extend(decode_payload(v["payload"].to_string().as_bytes()).unwrap().events);
    }
    let ev = format!(r#"{{"note":"x","transaction_information":{}}}"#, tx_info("5", "1", "0", "1750000000"));
    events.extend(decode_payload(&envelope("Custom", &ev)).unwrap().events);
    let bytes = r#""creator":"0xB35331ceaf2ED9Dd87E355B26210B784BAa1c6f1","atomData":"ff0041","atomWallet":"0x7d411fab9fb932d4f039772216ff82e389e3995a""#;
    events.push(one("AtomCreated", &format!(r#""termId":"{TERM}",{bytes}"#)));
    assert!(events.len() >= 12);
    // Key order inside a generic event's JSON may change; jsonb does not keep it anyway.
    let normalized = |mut e: Event| {
        if let EventKind::Generic(g) = &mut e.kind {
            g.event_data = serde_json::from_str::<serde_json::Value>(&g.event_data).unwrap().to_string();
        }
        e
    };
    for e in events {
        let back = decode_payload(encode_payload(&e).as_bytes()).unwrap();
        assert_eq!(back.events.into_iter().map(normalized).collect::<Vec<_>>(), vec![normalized(e)]);
    }
}

/// rindexer v0.41's reorg notice, as captured (`../shared/samples`), on one line.
const REAL_NOTICE: &str = r#"{"block_number":0,"event_data":[{"affected_events":[{"contract":"MultiVault","event":"Deposited","indexer":"RealClientIntuition","rows_deleted":0,"schema":"real_client_intuition_multi_vault","table":"deposited"}],"affected_tx_hashes":[],"depth":5,"events_deleted":0,"fork_block":102,"network":"intuition_local","type":"reorg"}],"event_name":"__rindexer_reorg","event_signature_hash":"0x0000000000000000000000000000000000000000000000000000000000000000","message_id":"rindexer_stream__-reorg_intuition_local_102-chunk-0","network":"intuition_local"}"#;

#[test]
fn a_reorg_notice_decodes_to_a_notice_not_a_failure() {
    let d = decode_payload(REAL_NOTICE.as_bytes()).unwrap();
    assert!(d.events.is_empty() && d.failures.is_empty());
    let n = &d.notices[0];
    assert_eq!((n.network.as_str(), n.fork_block, n.depth, n.events_deleted), ("intuition_local", 102, 5, 0));
    // Another copy of the same notice has the same fingerprint; another fork does not.
    let again = decode_payload(REAL_NOTICE.replace("chunk-0", "chunk-1").as_bytes()).unwrap();
    assert_eq!(again.notices[0].fingerprint, n.fingerprint);
    let other = decode_payload(REAL_NOTICE.replace("\"fork_block\":102", "\"fork_block\":103").as_bytes()).unwrap();
    assert_ne!(other.notices[0].fingerprint, n.fingerprint);
}

#[test]
fn a_reorg_notice_without_a_fork_block_is_rejected_with_the_reason() {
    let broken = REAL_NOTICE.replace("\"fork_block\":102,", "");
    let d = decode_payload(broken.as_bytes()).unwrap();
    assert!(d.notices.is_empty());
    assert_eq!(d.failures[0].error.0, "reorg notice: missing field `fork_block`");
    let negative = REAL_NOTICE.replace("\"fork_block\":102", "\"fork_block\":-1");
    assert!(decode_payload(negative.as_bytes()).unwrap().failures[0].error.0.contains("negative"));
}

#[test]
fn aliases_map_event_names_back() {
    let fields = r#""termId":"0173745f9e0d54254f4f81b02495da1716055583a1cbb7236ce8571befca6c3a","curveId":"1","sharePrice":"5","totalAssets":"6","totalShares":"7","vaultType":0"#;
    let ev = format!(r#"{{{fields},"transaction_information":{}}}"#, tx_info("1", "0", "0", "null"));
    let aliases = alias::Aliases::parse(&["PriceMoved=SharePriceChanged"]).unwrap();
    let d = decode_payload_with(&envelope("PriceMoved", &ev), &aliases).unwrap();
    assert!(matches!(d.events[0].kind, EventKind::SharePriceChanged(_)));
    // Without the alias the event is kept as an unknown one.
    let d = decode_payload(&envelope("PriceMoved", &ev)).unwrap();
    assert!(matches!(d.events[0].kind, EventKind::Generic(_)));
    assert!(alias::Aliases::parse(&["NoEquals"]).is_err());
    assert!(alias::Aliases::parse(&["A=B", "A=C"]).unwrap_err().contains("both"));
}

#[test]
fn a_network_that_is_not_a_string_is_refused_and_a_null_one_falls_back_to_the_envelope() {
    let fields = r#""termId":"0173745f9e0d54254f4f81b02495da1716055583a1cbb7236ce8571befca6c3a","curveId":"1","sharePrice":"5","totalAssets":"6","totalShares":"7","vaultType":0"#;
    let with_network = |network: &str| {
        let tx = tx_info("1", "0", "0", "null").replace(r#""network":"intuition""#, &format!(r#""network":{network}"#));
        decode_payload(&envelope("SharePriceChanged", &format!(r#"{{{fields},"transaction_information":{tx}}}"#)))
            .unwrap()
    };
    assert_eq!(with_network("7").failures[0].error.0, "`transaction_information.network` is not a string");
    assert_eq!(with_network("null").events[0].tx.network, "intuition");
    assert_eq!(with_network(r#""base""#).events[0].tx.network, "base");

    let notice = |network: &str| {
        let payload =
            REAL_NOTICE.replace(r#""network":"intuition_local","type""#, &format!(r#""network":{network},"type""#));
        decode_payload(payload.as_bytes()).unwrap()
    };
    assert_eq!(notice("7").failures[0].error.0, "reorg notice: `network` is not a string");
    assert_eq!(notice("null").notices[0].network, "intuition_local");
}

/// The tape check that replaces the byte scan for most payloads draws the depth limit where
/// the byte scan does (objects and arrays mixed), and a payload decodes alike on both paths
/// (a `\u` escape sends it through the byte scan).
#[test]
fn both_paths_agree_on_depth_and_long_integers() {
    let outcome = |note: &str, value: &str| {
        let ev =
            format!(r#"{{"note":"{note}","v":{value},"transaction_information":{}}}"#, tx_info("5", "1", "0", "null"));
        match decode_payload(&envelope("Custom", &ev)) {
            Ok(d) => Ok(d.events.iter().map(|e| format!("{:?}", e.kind)).collect::<Vec<_>>()),
            Err(e) => Err(e.0),
        }
    };
    // Depth of the payload: the envelope object, the event object (`event_data` without an
    // array), then `nest`.
    for nest in [61, 62, 63, 64] {
        let value = format!("{}1{}", r#"{"a":["#.repeat(nest / 2), "]}".repeat(nest / 2));
        let value = if nest % 2 == 1 { format!("[{value}]") } else { value };
        let plain = outcome("x", &value);
        assert_eq!(plain.is_err(), 2 + nest > MAX_DEPTH, "nesting {nest}: {plain:?}");
        let escaped = outcome(r"\u0078", &value);
        assert_eq!(plain, escaped, "nesting {nest}");
    }
    for value in ["1.5", "1e3", &"9".repeat(25), &format!("-{}", "9".repeat(25))] {
        assert_eq!(outcome("x", value), outcome(r"\u0078", value), "{value}");
    }
}
