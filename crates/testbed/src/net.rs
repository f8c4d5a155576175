//! Loopback addresses standing in for pod IPs, and free ports on them.
//!
//! Linux routes the whole of 127.0.0.0/8 to the loopback interface, so any
//! address in it can be bound without configuration. Each server in the test
//! bed gets its own address, which keeps `pg_stat_replication.client_addr`
//! and the product's peer URLs realistic.

use anyhow::{bail, Context, Result};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::atomic::{AtomicU32, Ordering};

/// Next candidate host part; 127.0.0.1 is left to everything else.
static NEXT: AtomicU32 = AtomicU32::new(2);

/// Hand out a loopback address (127.0.0.2, 127.0.0.3, …) not handed out
/// before in this process and on which nothing listens right now (checked in
/// `/proc/net/tcp`, so parallel test processes rarely collide).
pub fn next_loopback_ip() -> Result<Ipv4Addr> {
    let listening = listening_ipv4_addrs().unwrap_or_default();
    loop {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Stay inside 127.0.0.0/8 and skip .0/.255 host parts for clarity.
        if n >= 0x00ff_ffff {
            bail!("ran out of loopback addresses in 127.0.0.0/8");
        }
        let ip = Ipv4Addr::from(0x7f00_0000 | n);
        let last = ip.octets()[3];
        if last == 0 || last == 255 || listening.contains(&ip) {
            continue;
        }
        // Prove the kernel accepts the address before handing it out.
        TcpListener::bind(SocketAddrV4::new(ip, 0))
            .with_context(|| format!("binding loopback address {ip} (is `lo` up?)"))?;
        return Ok(ip);
    }
}

/// A TCP port on `ip` that was free a moment ago (bound to port 0 and
/// released). Callers that start a server on it retry on `EADDRINUSE`.
pub fn free_port(ip: Ipv4Addr) -> Result<u16> {
    let listener = TcpListener::bind(SocketAddrV4::new(ip, 0))
        .with_context(|| format!("finding a free port on {ip}"))?;
    Ok(listener
        .local_addr()
        .with_context(|| format!("reading the port bound on {ip}"))?
        .port())
}

/// IPv4 addresses with a listening TCP socket, from `/proc/net/tcp`.
fn listening_ipv4_addrs() -> Result<Vec<Ipv4Addr>> {
    let text = std::fs::read_to_string("/proc/net/tcp").context("reading /proc/net/tcp")?;
    let mut out = Vec::new();
    for line in text.lines().skip(1) {
        let mut fields = line.split_whitespace();
        let (Some(_sl), Some(local), Some(_remote), Some(state)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        // State 0A is TCP_LISTEN; the address is a little-endian hex u32.
        if state != "0A" {
            continue;
        }
        if let Some((addr, _port)) = local.split_once(':') {
            if let Ok(raw) = u32::from_str_radix(addr, 16) {
                out.push(Ipv4Addr::from(u32::from_be(raw)));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_loopback() {
        let a = next_loopback_ip().unwrap();
        let b = next_loopback_ip().unwrap();
        assert_ne!(a, b);
        assert!(a.is_loopback() && b.is_loopback());
        assert_ne!(a, Ipv4Addr::LOCALHOST);
        assert!(free_port(a).unwrap() > 0);
    }

    #[test]
    fn proc_net_tcp_parses() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let _ = l.local_addr().unwrap();
        assert!(listening_ipv4_addrs()
            .unwrap()
            .contains(&Ipv4Addr::LOCALHOST));
    }
}
