fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A new machine has no protoc; use the vendored one unless PROTOC is set explicitly.
    if std::env::var_os("PROTOC").is_none() {
        let protoc = protoc_bin_vendored::protoc_bin_path()?;
        // SAFETY: build scripts are single-threaded at this point.
        unsafe { std::env::set_var("PROTOC", protoc) };
    }
    println!("cargo:rerun-if-changed=proto/keel.proto");
    tonic_prost_build::configure().compile_protos(&["proto/keel.proto"], &["proto"])?;
    Ok(())
}
