//! The outbox measure runs end to end against the broker and PostgreSQL, on a small scale:
//! every row has a figure for plain enqueues and for the outbox, and the JSON holds the same
//! rows. No timing is asserted. Skips without a broker or without a PostgreSQL (unless
//! `JOBS_REQUIRE_POSTGRES` is set, as in CI).

use clap::Parser as _;
use jobs_bench::Options;
use jobs_core::testing::broker_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbox_measure_yields_figures_for_both_routes() {
    let Some(url) = broker_url() else {
        return;
    };
    let Some(postgres_url) = jobs_outbox::testing::postgres_url() else {
        return;
    };
    let json = std::env::temp_dir().join(format!(
        "jobs-bench-outbox-smoke-{}.json",
        std::process::id()
    ));
    let options = Options::parse_from([
        "jobs-bench",
        "--measures",
        "outbox",
        "--n",
        "300",
        "--runs",
        "1",
        "--outbox-writers",
        "4",
        "--outbox-batch",
        "10",
        "--outbox-rates",
        "200",
        "--latency-secs",
        "1",
        "--url",
        &url,
        "--postgres-url",
        &postgres_url,
        "--json",
        json.to_str().expect("a UTF-8 temp path"),
    ]);
    let report = jobs_bench::run(&options).await.expect("the benchmark runs");
    assert!(report.rows.is_empty() && report.cascade.is_empty());
    let rows = &report.outbox;

    let mut measures = Vec::new();
    for per_tx in ["1 job", "10 jobs"] {
        for what in ["enqueue rate", "handled rate", "CPU"] {
            measures.push(format!("{what}, outbox {per_tx}/transaction"));
        }
    }
    measures.push("p50 latency at 200/s".to_owned());
    measures.push("p99 latency at 200/s".to_owned());
    for measure in &measures {
        let row = rows
            .iter()
            .find(|row| row.queue == "quorum" && &row.measure == measure)
            .unwrap_or_else(|| panic!("no {measure} row: {rows:#?}"));
        assert!(row.enqueue.is_some_and(|v| v > 0.0), "{row:?}");
        assert!(row.outbox.is_some_and(|v| v > 0.0), "{row:?}");
        assert!(row.ratio.is_some(), "{row:?}");
    }
    assert_eq!(rows.len(), measures.len(), "{rows:#?}");

    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON was written"))
            .expect("valid JSON");
    assert_eq!(
        written["outbox_rows"].as_array().map(Vec::len),
        Some(rows.len())
    );
    std::fs::remove_file(&json).expect("the JSON is removed");
}
