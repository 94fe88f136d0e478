//! `loadgen bench` at a CI-sized scale: it must run every measurement end to end and write
//! a well-formed report (the figures themselves are not asserted; they vary by machine).

use loadgen::bench::{run, BenchConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_bench_writes_a_complete_report() {
    let out_dir = std::env::temp_dir().join(format!("rps-bench-test-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    // A variant whose second statement refuses a transaction block: each runs on its own.
    let variant = out_dir.join("fillfactor90.sql");
    std::fs::write(&variant, "ALTER TABLE term SET (fillfactor = 90);\n-- statement\nVACUUM FULL term;\n").unwrap();
    let config = BenchConfig {
        pg_url: "postgres://postgres@127.0.0.1:5432".into(),
        redis_url: "redis://127.0.0.1:6379".into(),
        // Above 2 x batch::MIN_PART_EVENTS, so the backfill's batch is applied in parts.
        events: 5_000,
        seed: 5,
        repeat: 2,
        batch_size: rps::ingest::config::DEFAULT_BATCH_SIZE,
        apply_parts: 2,
        per_event_events: 100,
        live_rates: vec![400.0],
        live_seconds: 1.0,
        scale_sizes: vec![0, 3_000],
        scale_events: 1_000,
        verify_scale_up_to: 1_000_000,
        scale_sql_variants: vec![variant],
        scale_variant_rounds: 2,
        out_dir: out_dir.clone(),
        ..BenchConfig::default()
    };
    let report = run(&config).await.expect("bench runs");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("latest.json")).unwrap()).unwrap();
    for section in ["machine", "backfill", "raw_floor", "per_event", "live", "scaling"] {
        assert!(!json[section].is_null(), "report lacks {section}");
    }
    assert_eq!(json["backfill"]["engine"]["events"], 5_000);
    assert!(json["backfill"]["engine"]["parallel_batches"].as_u64().unwrap() >= 1, "the backfill used parts");
    assert_eq!(json["backfill"]["engine"]["matches_reference"], true);
    assert_eq!(json["backfill"]["analytics"]["matches_reference"], true);
    assert_eq!(json["backfill"]["runs_events_per_sec"].as_array().unwrap().len(), 2);
    assert_eq!(json["raw_floor"]["runs_events_per_sec"].as_array().unwrap().len(), 2);
    assert_eq!(json["per_event"]["batches"], json["per_event"]["events"], "batch size 1 is one event per batch");
    assert_eq!(json["live"][0]["events"], 400);
    assert_eq!(json["live"][0]["runs_p99_ms"].as_array().unwrap().len(), 2);
    assert_eq!(json["live"][0]["matches_reference"], true);
    assert!(json["live"][0]["latency_ms"]["p99"].as_f64().unwrap() > 0.0);
    assert_eq!(json["scaling"].as_array().unwrap().len(), 2);
    assert_eq!(json["scaling"][1]["preloaded_events"], 3_000);
    assert_eq!(json["scaling"][1]["engine"]["matches_reference"], true);
    for scale in json["scaling"].as_array().unwrap() {
        assert!(scale["checkpoint_seconds"].as_f64().is_some(), "measured after a CHECKPOINT");
        let runs: Vec<(String, f64)> = scale["variants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| (r["variant"].as_str().unwrap().to_owned(), r["events_per_sec"].as_f64().unwrap()))
            .collect();
        let names: Vec<&str> = runs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["current", "fillfactor90", "fillfactor90", "current"], "two rounds, order alternating");
        assert!(runs.iter().all(|(_, eps)| *eps > 0.0), "{runs:?}");
    }
    assert!(report.floor_ratio().unwrap() > 0.0 && report.batching_factor().unwrap() > 0.0);
    // PostgreSQL and Redis run on this machine here, so every party's CPU time is known.
    for (run, parties) in [("backfill", &["this_process", "postgres", "redis"][..]), ("raw_floor", &["postgres"][..])] {
        for party in parties {
            let seconds = json[run]["cpu"][party].as_f64();
            assert!(seconds.is_some_and(|s| s > 0.0), "{run} CPU of {party}: {seconds:?}");
        }
    }

    let md = std::fs::read_to_string(out_dir.join("latest.md")).unwrap();
    for heading in [
        "## Backfill throughput",
        "## Live latency",
        "## Scaling",
        "raw-ingest floor",
        "CPU, core-seconds",
        "## SQL variants at scale",
        "right after a CHECKPOINT",
    ] {
        assert!(md.contains(heading), "markdown lacks {heading}");
    }
    std::fs::remove_dir_all(out_dir).ok();
}

/// `--preload-through-engine`: the stored events go through the engine slice by slice, the
/// tables it leaves equal the reference views, and the report has the slices' growth table.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_preload_through_the_engine_stores_every_slice_and_reports_its_growth() {
    let out_dir = std::env::temp_dir().join(format!("rps-bench-grow-test-{}", std::process::id()));
    std::fs::create_dir_all(&out_dir).unwrap();
    let config = BenchConfig {
        pg_url: "postgres://postgres@127.0.0.1:5432".into(),
        redis_url: "redis://127.0.0.1:6379".into(),
        events: 1_000,
        seed: 6,
        repeat: 1,
        per_event_events: 10,
        live_rates: vec![],
        scale_sizes: vec![5_000],
        scale_events: 1_000,
        preload_slice_events: 2_000,
        preload_through_engine: true,
        verify_scale_up_to: 1_000_000,
        out_dir: out_dir.clone(),
        ..BenchConfig::default()
    };
    run(&config).await.expect("bench runs");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out_dir.join("latest.json")).unwrap()).unwrap();
    let scale = &json["scaling"][0];
    assert_eq!(scale["preloaded_events"], 5_000);
    assert_eq!(scale["preload"]["through_engine"], true);
    let before: Vec<u64> =
        scale["growth"].as_array().unwrap().iter().map(|g| g["stored_before"].as_u64().unwrap()).collect();
    assert_eq!(before, [0, 2_000, 4_000], "three slices, each on top of the ones before");
    let applied: u64 = scale["growth"].as_array().unwrap().iter().map(|g| g["events"].as_u64().unwrap()).sum();
    assert_eq!(applied, 5_000);
    // The preload's tables and the measured batches' together equal the reference views, and
    // so do the level-3 tables after the analytics worker's drain.
    assert_eq!(scale["engine"]["matches_reference"], true);
    assert_eq!(scale["analytics"]["matches_reference"], true);
    let md = std::fs::read_to_string(out_dir.join("latest.md")).unwrap();
    assert!(md.contains("## The backfill as the database grows"), "markdown lacks the growth table");
    assert!(md.contains("preload of 5000 events through the engine"), "markdown lacks the preload line");
    std::fs::remove_dir_all(out_dir).ok();
}
