//! Replays the `decode_classify` fuzz target's corpus (`fuzz/corpus/decode_classify/`) through
//! the same decode-and-classify code, as a stable test: no file panics, and each named seed gets
//! the verdict its name states (`run-aN-…`, `too-large-…`, `unknown-job-…`, `decode-…`; see
//! `fuzz/seeds.py`).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use jobs_core::FailureKind;
use jobs_core::testing::Classification;

#[allow(
    unreachable_pub,
    reason = "shared with the fuzz crate, where these items are its public API"
)]
#[path = "../../fuzz/src/lib.rs"]
mod input;

/// The verdict a seed's name promises, if it promises one.
fn expected(name: &str) -> Option<Classification> {
    if let Some(rest) = name.strip_prefix("run-a") {
        let attempt = rest.split('-').next()?.parse().ok()?;
        return Some(Classification::Run { attempt });
    }
    let kind = [
        ("too-large-", FailureKind::TooLarge),
        ("unknown-job-", FailureKind::UnknownJob),
        ("decode-", FailureKind::Decode),
    ]
    .into_iter()
    .find_map(|(prefix, kind)| name.starts_with(prefix).then_some(kind))?;
    Some(Classification::ErrorQueue { kind })
}

#[test]
fn every_corpus_file_is_classified_as_its_name_says() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/decode_classify");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("the corpus directory exists")
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    files.sort();
    let mut named = 0;
    for path in &files {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .expect("a file name");
        let data = std::fs::read(path).expect("a corpus file reads");
        let classified = catch_unwind(AssertUnwindSafe(|| input::classify(input::envelope(&data))))
            .unwrap_or_else(|_| panic!("{name}: classifying panicked"));
        if let Some(expected) = expected(name) {
            assert_eq!(classified, expected, "{name}");
            named += 1;
        }
    }
    assert!(
        named >= 40,
        "only {named} named seeds of {} files in {}",
        files.len(),
        dir.display()
    );
}

#[test]
fn the_input_format_reads_type_headers_and_body() {
    // Own type, one header: `x-jobs-attempt` (0), an `Int` (0) of 2; then the body.
    let data = [1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0x0a, 0x01, b'x'];
    let envelope = input::envelope(&data);
    assert_eq!(
        envelope.properties.kind.as_deref(),
        Some(input::fuzz_node::JOB.name())
    );
    assert_eq!(envelope.attempt(), Ok(2));
    assert_eq!(&envelope.body[..], &[0x0a, 0x01, b'x']);
    assert_eq!(
        input::classify(envelope),
        Classification::Run { attempt: 2 }
    );
}
