//! Compiles the `.proto` files that programs in other languages share with the tests, so the
//! Rust side decodes exactly what the Python and Go programs encode from the same file and no
//! side describes a message by hand:
//!
//! * the upload server's `uploads.proto`, for the cross-language producers
//!   (`tests/amqp_cross_language.rs`);
//! * `proto/calls.proto`, the `answer` job's messages (`src/calls.rs`), for the cross-language
//!   calls (`tests/amqp_cross_language_calls.rs`).
//!
//! protox parses the files in pure Rust, so the build needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let uploads_dir = manifest_dir.join("../examples/upload-server/proto");
    let calls_dir = manifest_dir.join("proto");
    let protos = [
        uploads_dir.join("uploads.proto"),
        calls_dir.join("calls.proto"),
    ];
    for proto in &protos {
        println!("cargo:rerun-if-changed={}", proto.display());
    }
    // One file per package in OUT_DIR: `uploads.rs` and `calls.rs`.
    let descriptors = protox::compile(&protos, [&uploads_dir, &calls_dir])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
