//! CPU cost per process of a measurement: the consumer (the raw path or the
//! usage-ingest instances), the broker and ClickHouse, each as CPU-seconds
//! (user + system, all threads, from `/proc/<pid>/stat`) between the
//! consumer's start and the last row stored, per million events consumed —
//! so a ratio of rates can be explained by who spent the cores.
//!
//! The broker and ClickHouse are found by the port they listen on. They are
//! shared: anything else that uses them during a run (another helper's
//! tests) is counted too, and ClickHouse's background merges of the run's
//! parts go on after it (not counted).

use serde::Serialize;
use std::time::Instant;
use usage_testkit::host;

/// CPU-seconds per million events of each process of a measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Cpu {
    /// The raw path, or the usage-ingest instances together.
    pub(crate) consumer: f64,
    /// The broker (tansu); None when its process was not found.
    pub(crate) broker: Option<f64>,
    /// clickhouse-server; None when its process was not found.
    pub(crate) clickhouse: Option<f64>,
    /// Wall-clock seconds per million events, from the consumer's start to
    /// the last row stored: 2 here would be the machine's 2 cores all busy
    /// at 1 CPU-second per million per process.
    pub(crate) wall: f64,
}

impl Cpu {
    /// Consumer, broker and ClickHouse together (what is known of them).
    pub(crate) fn total(&self) -> f64 {
        self.consumer + self.broker.unwrap_or(0.0) + self.clickhouse.unwrap_or(0.0)
    }
}

/// The shared services' CPU time when a measurement starts.
pub(crate) struct Meter {
    started: Instant,
    broker: Option<(u32, f64)>,
    clickhouse: Option<(u32, f64)>,
}

/// The port of a `host:port` (the last `:`), or of an `http://host:port/` URL.
fn port_of(address: &str) -> Option<u16> {
    let rest = address.rsplit_once("://").map_or(address, |(_, r)| r);
    let host_port = rest.split('/').next()?;
    host_port.rsplit_once(':')?.1.parse().ok()
}

fn sample(port: Option<u16>) -> Option<(u32, f64)> {
    let pid = host::listening_pid(port?)?;
    Some((pid, host::cpu_seconds(pid)?))
}

impl Meter {
    /// Reads the broker's (first of `brokers`) and ClickHouse's CPU time now.
    pub(crate) fn start(brokers: &str, clickhouse_url: &str) -> Meter {
        let broker_port = brokers.split(',').next().and_then(port_of);
        Meter {
            started: Instant::now(),
            broker: sample(broker_port),
            clickhouse: sample(port_of(clickhouse_url)),
        }
    }

    /// The cost of the measurement so far, for `events` consumed by the
    /// processes `consumers` (read now: call before they are stopped).
    pub(crate) fn stop(&self, consumers: &[u32], events: u64) -> Cpu {
        let per_million = 1e6 / events.max(1) as f64;
        let delta = |s: Option<(u32, f64)>| {
            s.and_then(|(pid, before)| {
                host::cpu_seconds(pid).map(|now| (now - before) * per_million)
            })
        };
        let consumer: f64 = consumers
            .iter()
            .filter_map(|&pid| host::cpu_seconds(pid))
            .sum();
        Cpu {
            consumer: consumer * per_million,
            broker: delta(self.broker),
            clickhouse: delta(self.clickhouse),
            wall: self.started.elapsed().as_secs_f64() * per_million,
        }
    }
}

/// The printed table: per path, the median over runs of each column.
pub(crate) fn print_table(rows: &[(&str, Vec<Cpu>)]) {
    use usage_testkit::stats::median;
    println!(
        "CPU-seconds per million authorizations (start to last row stored, median over runs):"
    );
    println!(
        "  {:<20} {:>10} {:>10} {:>11} {:>10} {:>10}",
        "", "consumer", "broker", "clickhouse", "total", "wall"
    );
    for (path, cpus) in rows {
        if cpus.is_empty() {
            continue;
        }
        let col = |f: &dyn Fn(&Cpu) -> Option<f64>| -> String {
            let v: Vec<f64> = cpus.iter().filter_map(f).collect();
            if v.is_empty() {
                "?".to_owned()
            } else {
                format!("{:.2}", median(v))
            }
        };
        println!(
            "  {:<20} {:>10} {:>10} {:>11} {:>10} {:>10}",
            path,
            col(&|c| Some(c.consumer)),
            col(&|c| c.broker),
            col(&|c| c.clickhouse),
            col(&|c| Some(c.total())),
            col(&|c| Some(c.wall)),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_of_brokers_and_urls() {
        assert_eq!(port_of("127.0.0.1:9092"), Some(9092));
        assert_eq!(port_of("http://127.0.0.1:8123"), Some(8123));
        assert_eq!(port_of("http://localhost:8123/"), Some(8123));
        assert_eq!(port_of("localhost"), None);
    }
}
