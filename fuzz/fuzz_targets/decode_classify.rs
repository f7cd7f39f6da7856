//! Any bytes, read as an envelope (see `jobs_fuzz::envelope`), go through the engine's
//! decode-and-classify path: it must never panic, and its verdict must agree with the input.
#![no_main]

use jobs_core::testing::Classification;
use jobs_core::FailureKind;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let envelope = jobs_fuzz::envelope(data);
    let too_large = envelope.body.len() > jobs_fuzz::MAX_MESSAGE_SIZE;
    let classified = jobs_fuzz::classify(envelope);
    match classified {
        Classification::Run { attempt } => {
            assert!(attempt >= 1, "ran at attempt {attempt}");
            assert!(!too_large, "a body over the limit ran");
        }
        Classification::ErrorQueue { kind } => {
            assert_eq!(kind == FailureKind::TooLarge, too_large, "{kind:?}");
            assert!(
                matches!(
                    kind,
                    FailureKind::TooLarge | FailureKind::UnknownJob | FailureKind::Decode
                ),
                "refused as {kind:?} before running"
            );
        }
    }
});
