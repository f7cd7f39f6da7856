//! Generates the job messages from `proto/uploads.proto` at build time, in pure Rust: protox
//! parses the file into a descriptor set (no system `protoc`), prost-build writes the structs.

use std::error::Error;

const PROTO: &str = "proto/uploads.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    // The include directory: an edited import elsewhere under it reruns the build too.
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile([PROTO], ["proto"])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
