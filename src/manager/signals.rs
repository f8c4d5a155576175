//! Waiting for SIGTERM or SIGINT, the two ways a pod or a user stops us.

/// Resolves with the signal's name. Without signal handlers (which cannot
/// happen on Linux) it never resolves: the process can still be killed.
pub async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        std::future::pending::<()>().await;
        return "none";
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}
