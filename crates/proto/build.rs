//! Compiles `proto/` with protox (a Rust protobuf compiler): no system `protoc` needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    let files = [
        "opsflow/v1/eventlog.proto",
        "opsflow/v1/views.proto",
        "opsflow/v1/catalog.proto",
        "io/cloudevents/v1/cloudevents.proto",
    ];
    for file in &files {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let fds = protox::compile(files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("opsflow_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure()
        .bytes(".opsflow.v1.ProposedEvent.data")
        .bytes(".opsflow.v1.RecordedEvent.data")
        .compile_fds(fds)?;
    Ok(())
}
