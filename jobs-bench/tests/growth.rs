//! The growth measure runs end to end against the broker on a tiny scale: a worker process per
//! row, every row yields its figures, and the JSON holds them. No timing is asserted.
//!
//! It starts `jobs-bench-worker`, which cargo builds for the package's integration tests, and
//! is skipped without a broker.

use std::path::Path;

use clap::Parser as _;
use jobs_bench::Options;
use jobs_core::testing::broker_url;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_growth_row_yields_its_figures() {
    let Some(url) = broker_url() else {
        return;
    };
    let json = std::env::temp_dir().join(format!("jobs-bench-growth-{}.json", std::process::id()));
    let worker = Path::new(env!("CARGO_BIN_EXE_jobs-bench-worker"));
    let options = Options::parse_from([
        "jobs-bench",
        "--measures",
        "growth",
        "--runs",
        "1",
        "--n",
        "200",
        "--growth-types",
        "1,3",
        // Enough that the worker cannot drain it before it reports ready (its drain is timed
        // from then): a second or more of work against a startup of a tenth of one.
        "--growth-backlogs",
        "20000",
        "--idle-secs",
        "1",
        "--url",
        &url,
        "--worker-binary",
        worker.to_str().expect("a UTF-8 path"),
        "--json",
        json.to_str().expect("a UTF-8 temp path"),
    ]);
    let report = jobs_bench::run(&options).await.expect("the benchmark runs");

    let types: Vec<usize> = report.growth_types.iter().map(|row| row.types).collect();
    assert_eq!(types, [1, 3]);
    for row in &report.growth_types {
        assert_eq!((row.jobs, row.runs), (200, 1), "{row:?}");
        assert!(row.startup_secs > 0.0, "{row:?}");
        assert!(row.idle_cpu_percent >= 0.0, "{row:?}");
        assert!(row.idle_rss_mib > 0.0 && row.peak_rss_mib > 0.0, "{row:?}");
        assert!(row.jobs_per_sec > 0.0, "{row:?}");
    }
    let [backlog] = report.growth_backlogs.as_slice() else {
        panic!("one backlog row: {:#?}", report.growth_backlogs);
    };
    assert_eq!(backlog.backlog, 20_000);
    assert!(backlog.jobs_per_sec > 0.0, "{backlog:?}");
    assert!(backlog.peak_rss_mib >= backlog.end_rss_mib, "{backlog:?}");
    assert!(backlog.end_rss_mib > 0.0, "{backlog:?}");

    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON was written"))
            .expect("valid JSON");
    assert_eq!(
        written["growth_types_rows"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(
        written["growth_backlog_rows"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(
        written["growth_samples"]["types"].as_array().map(Vec::len),
        Some(2)
    );
    std::fs::remove_file(&json).expect("the JSON is removed");
}
