//! Free TCP ports on loopback, for the services and binaries a harness starts.

use anyhow::{Context, Result};
use rand::Rng;
use std::collections::HashSet;
use std::net::TcpListener;
use std::sync::{Mutex, PoisonError};

/// Ports below the ephemeral range that a free port is drawn from.
const SPAN: u16 = 20_000;

/// A port nothing listens on now, below the kernel's ephemeral range, and
/// never handed out before by this process (two instances started one after
/// the other never get the same port).
///
/// A port the kernel picks (`bind(0)`) comes from the range it also uses for
/// the local end of outgoing connections: while ClickHouse was down for
/// fault 2 of the fault suite, a client socket took its interserver port and
/// ClickHouse could not listen there again ("Address already in use").
/// Below the range, only another listener can take a port. When the range
/// starts too low to leave room below it, the kernel picks.
pub fn free_port() -> Result<u16> {
    let high = ephemeral_range_start();
    let low = high.saturating_sub(SPAN).max(1_024);
    if low + 100 < high {
        let mut rng = rand::rng();
        for _ in 0..200 {
            let port = rng.random_range(low..high);
            if port_free(port) && hand_out(port) {
                return Ok(port);
            }
        }
    }
    for _ in 0..200 {
        let listener = TcpListener::bind("127.0.0.1:0").context("binding a free port")?;
        let port = listener.local_addr()?.port();
        if hand_out(port) {
            return Ok(port);
        }
    }
    anyhow::bail!("no free port found")
}

/// Keeps [`free_port`] from ever handing out `port` in this process (e.g. a
/// port a stopped service will listen on again); false if it was already.
pub fn reserve(port: u16) -> bool {
    hand_out(port)
}

/// Whether nothing listens on `port` of loopback now.
pub fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// The first port of the kernel's ephemeral range (32768 when unreadable).
pub fn ephemeral_range_start() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse().ok())
        .unwrap_or(32_768)
}

/// Records `port` as handed out; false if it was already.
fn hand_out(port: u16) -> bool {
    static HANDED_OUT: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    HANDED_OUT
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_or_insert_with(HashSet::new)
        .insert(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct_and_below_the_ephemeral_range() {
        let start = ephemeral_range_start();
        let ports: Vec<u16> = (0..50).map(|_| free_port().expect("a free port")).collect();
        let distinct: HashSet<u16> = ports.iter().copied().collect();
        assert_eq!(distinct.len(), ports.len());
        if start > 1_024 + 100 {
            assert!(ports.iter().all(|p| *p < start), "{ports:?} vs {start}");
        }
    }
}
