//! The benchmark runs end to end against the broker, on a small scale: every measure of both
//! clients yields a figure, every measure of delays and retries too, and the JSON holds the
//! same rows. No timing is asserted.

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
        "--latency-rounds",
        "2",
        "--measures",
        "publish,batch-publish,consume,end-to-end,latency,delayed-publish,retry,delay-spread",
        "--retry-n",
        "200",
        "--spread-jobs",
        "60",
        "--spread-delays",
        "12",
        "--max-delay",
        "10",
        "--url",
        &url,
        "--json",
        json.to_str().expect("a UTF-8 temp path"),
    ]);
    let report = jobs_bench::run(&options).await.expect("the benchmark runs");
    let rows = &report.rows;

    for queue in ["classic", "quorum"] {
        for measure in [
            "publish rate",
            "batch publish rate",
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
    // Latency in paired rounds: two per queue at the one rate.
    for queue in ["classic", "quorum"] {
        let round = report
            .rounds
            .iter()
            .find(|row| row.queue == queue && row.rate == 500)
            .unwrap_or_else(|| panic!("no latency rounds for {queue}: {:#?}", report.rounds));
        assert_eq!(round.rounds, 2, "{round:?}");
        assert!(round.raw_p99_us.median > 0.0, "{round:?}");
        assert!(round.framework_p99_us.median > 0.0, "{round:?}");
    }
    let memory = rows
        .iter()
        .find(|row| row.queue == "memory" && row.measure == "end-to-end rate")
        .expect("an in-memory row");
    // The raw column of the memory rows holds the bare baseline (src/bare.rs).
    assert!(memory.raw.is_some_and(|v| v > 0.0), "{memory:?}");
    assert!(memory.framework.is_some_and(|v| v > 0.0));

    let written: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("the JSON was written"))
            .expect("valid JSON");
    assert_eq!(written["rows"].as_array().map(Vec::len), Some(rows.len()));

    // Delays and retries: both paths of the delayed publish on each queue and of the retry
    // path; the delay spread through the cascade alone.
    let cascade = &report.cascade;
    let both = |queue: &str, measure: &str| {
        let row = cascade
            .iter()
            .find(|row| row.queue == queue && row.measure == measure)
            .unwrap_or_else(|| panic!("no {measure} row for {queue}: {cascade:#?}"));
        assert!(row.direct.is_some_and(f64::is_finite), "{row:?}");
        assert!(row.cascade.is_some_and(f64::is_finite), "{row:?}");
        row.clone()
    };
    for queue in ["classic", "quorum"] {
        for measure in ["enqueue rate", "enqueue CPU", "ready rate, less the delay"] {
            let row = both(queue, &format!("{measure} (delay 1 s)"));
            assert!(row.direct > Some(0.0) && row.cascade > Some(0.0), "{row:?}");
        }
    }
    for measure in ["retry wall", "retry rate, less the delay", "retry CPU"] {
        let row = both("quorum", measure);
        assert!(row.direct > Some(0.0) && row.cascade > Some(0.0), "{row:?}");
    }
    for measure in [
        "retry p50 lateness",
        "retry p99 lateness",
        "retry max lateness",
    ] {
        both("quorum", measure);
    }
    let spread: Vec<_> = cascade
        .iter()
        .filter(|row| row.measure.starts_with("60 jobs, 12 delays 0–10 s: "))
        .collect();
    for what in [
        "min lateness",
        "p50 lateness",
        "p99 lateness",
        "max lateness",
        "started outside [d, d + 1.5 s]",
        "never started",
    ] {
        let row = spread
            .iter()
            .find(|row| row.measure.ends_with(what))
            .unwrap_or_else(|| panic!("no delay spread {what} row: {spread:#?}"));
        assert_eq!(row.direct, None, "{row:?}");
        assert!(row.cascade.is_some_and(f64::is_finite), "{row:?}");
    }
    assert_eq!(cascade.len(), 3 * 2 + 6 + 6, "{cascade:#?}");
    for row in cascade {
        assert!(row.cascade.is_some(), "{row:?}");
    }
    assert_eq!(
        written["cascade_rows"].as_array().map(Vec::len),
        Some(cascade.len())
    );
    std::fs::remove_file(&json).expect("the JSON is removed");
}
