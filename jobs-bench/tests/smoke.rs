//! The benchmark runs end to end against the broker, on a small scale: every measure of both
//! clients yields a figure, and the JSON holds the same rows. No timing is asserted.

use clap::Parser as _;
use jobs_bench::Options;
use jobs_core::testing::broker_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_measure_of_both_clients_yields_a_figure() {
    let Some(url) = broker_url() else {
        return;
    };
    let json = std::env::temp_dir().join(format!("jobs-bench-smoke-{}.json", std::process::id()));
    let options = Options::parse_from([
        "jobs-bench",
        "--n",
        "300",
        "--runs",
        "1",
        "--rates",
        "500",
        "--latency-secs",
        "1",
        "--url",
        &url,
        "--json",
        json.to_str().expect("a UTF-8 temp path"),
    ]);
    let rows = jobs_bench::run(&options).await.expect("the benchmark runs");

    for queue in ["classic", "quorum"] {
        for measure in [
            "publish rate",
            "consume rate",
            "end-to-end rate",
            "end-to-end CPU",
            "p99 latency at 500/s",
        ] {
            let row = rows
                .iter()
                .find(|row| row.queue == queue && row.measure == measure)
                .unwrap_or_else(|| panic!("no {measure} row for {queue}"));
            assert!(row.raw.is_some_and(|v| v > 0.0), "{row:?}");
            assert!(row.framework.is_some_and(|v| v > 0.0), "{row:?}");
            assert!(row.ratio.is_some(), "{row:?}");
        }
    }
    let memory = rows
        .iter()
        .find(|row| row.queue == "memory" && row.measure == "end-to-end rate")
        .expect("an in-memory row");
    assert_eq!(memory.raw, None);
    assert!(memory.framework.is_some_and(|v| v > 0.0));

    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON was written"))
            .expect("valid JSON");
    assert_eq!(written["rows"].as_array().map(Vec::len), Some(rows.len()));
    std::fs::remove_file(&json).expect("the JSON is removed");
}
