//! Compiles the upload server's `.proto` into Rust for the cross-language tests
//! (`tests/amqp_cross_language.rs`): the Rust worker decodes exactly what the Python and Go
//! producers encode from the same file, so no side describes the message by hand.
//!
//! protox parses the file in pure Rust, so the build needs no system `protoc`.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let proto_dir = manifest_dir.join("../examples/upload-server/proto");
    let proto = proto_dir.join("uploads.proto");
    println!("cargo:rerun-if-changed={}", proto.display());
    let descriptors = protox::compile([&proto], [&proto_dir])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
