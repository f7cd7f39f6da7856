//! Writes the growth measure's job types into `OUT_DIR/growth_jobs.rs`: [`TYPES`] `#[job]`
//! functions, each with its own routing key and queue. `#[job]` takes only string literals, so
//! a declarative macro cannot make their names, and a hundred written by hand would hide the one
//! thing that differs between them.

use std::fmt::Write as _;
use std::path::PathBuf;

/// How many job types the largest row of the growth measure serves.
const TYPES: usize = 100;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    let mut out = String::new();
    // Writing to a String cannot fail.
    for i in 0..TYPES {
        let _ = write!(
            out,
            r#"
/// Job type {i} of the growth measure: a no-op on a classic queue of its own.
#[job(
    exchange = "jobs-bench.growth",
    routing_key = "type_{i:03}",
    queue = "jobs-bench.growth.type_{i:03}",
    queue_type = "classic",
    retries = 0,
    concurrency = 100
)]
pub(crate) async fn growth_{i:03}(job: BenchJob) -> Result<(), JobError> {{
    drop(job);
    Ok(())
}}
"#
        );
    }
    let _ = write!(
        out,
        "\n/// Every job type of the growth measure, in order.\n\
         pub(crate) static TYPES: [&Job; {TYPES}] = ["
    );
    for i in 0..TYPES {
        let _ = write!(out, "&growth_{i:03}::JOB, ");
    }
    out.push_str("];\n");
    let Some(dir) = std::env::var_os("OUT_DIR") else {
        panic!("cargo sets OUT_DIR for build scripts");
    };
    let path = PathBuf::from(dir).join("growth_jobs.rs");
    if let Err(error) = std::fs::write(&path, out) {
        panic!("writing {}: {error}", path.display());
    }
}
