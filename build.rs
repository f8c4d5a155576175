//! Compiles the CNPG-I protocol definitions (proto/cnpgi/) into Rust at build
//! time with protox, a protobuf compiler written in Rust: a fresh machine
//! needs no system `protoc`, and no generated file can go stale.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/cnpgi/identity.proto",
        "proto/cnpgi/operator_lifecycle.proto",
        "proto/cnpgi/operator.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        // The client is generic over its transport: the tests drive the
        // server with it; the product never dials.
        .build_client(true)
        .build_transport(false)
        .compile_fds(descriptors)?;
    Ok(())
}
