//! Serves a sandbox until Ctrl-C: `cargo run -p kube-sandbox --example serve -- 127.0.0.1:8001 /tmp/kubeconfig`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let listen = args
        .next()
        .unwrap_or_else(|| "127.0.0.1:0".into())
        .parse()?;
    let kubeconfig = args.next().map(std::path::PathBuf::from);
    kube_sandbox::serve_until_signal(listen, kubeconfig, Vec::new()).await
}
