//! Compiles the project's own protocol definitions (proto/) into Rust with protox, so no
//! system `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = ["proto/tfplugin6.proto", "proto/plugin.proto"];
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        // Clients are used by the integration tests and benchmarks that play Terraform's part.
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
