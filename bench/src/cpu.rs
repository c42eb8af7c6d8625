//! CPU cost per process of a measurement: the consumer (the raw path or the
//! usage-ingest instances), the broker and ClickHouse, each as CPU-seconds
//! (user + system, all threads, from `/proc/<pid>/stat`) between the
//! consumer's start and the last row stored, per million events consumed —
//! so a ratio of rates can be explained by who spent the cores.
//!
//! The broker and ClickHouse are found by the port they listen on. They are
//! shared: anything else that uses them during a run (another helper's
//! tests) is counted too. So each is also watched for [`IDLE_SAMPLE`]
//! before the consumer starts, and that background rate over the
//! measurement's wall time is reported beside it (`*_background`) and
//! taken off in the printed table's net columns. ClickHouse's background
//! merges of the run's parts that go on after it are not counted.

use serde::Serialize;
use std::time::{Duration, Instant};
use usage_testkit::host;

/// How long the broker and ClickHouse are watched before a measurement, for
/// the CPU others make them spend.
const IDLE_SAMPLE: Duration = Duration::from_secs(3);

/// CPU-seconds per million events of each process of a measurement.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Cpu {
    /// The raw path, or the usage-ingest instances together.
    pub(crate) consumer: f64,
    /// The broker (tansu); None when its process was not found.
    pub(crate) broker: Option<f64>,
    /// clickhouse-server; None when its process was not found.
    pub(crate) clickhouse: Option<f64>,
    /// Of `broker`: its rate before the consumer started, over the wall time.
    pub(crate) broker_background: Option<f64>,
    /// Of `clickhouse`: the same.
    pub(crate) clickhouse_background: Option<f64>,
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

    /// The broker less its background.
    pub(crate) fn broker_net(&self) -> Option<f64> {
        Some((self.broker? - self.broker_background.unwrap_or(0.0)).max(0.0))
    }

    /// ClickHouse less its background.
    pub(crate) fn clickhouse_net(&self) -> Option<f64> {
        Some((self.clickhouse? - self.clickhouse_background.unwrap_or(0.0)).max(0.0))
    }

    /// The total less the backgrounds.
    pub(crate) fn total_net(&self) -> f64 {
        self.consumer + self.broker_net().unwrap_or(0.0) + self.clickhouse_net().unwrap_or(0.0)
    }
}

/// The shared services' CPU time when a measurement starts.
pub(crate) struct Meter {
    started: Instant,
    broker: Option<(u32, f64)>,
    clickhouse: Option<(u32, f64)>,
    /// CPU-seconds per second each spent before the measurement.
    broker_idle: Option<f64>,
    clickhouse_idle: Option<f64>,
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
    /// Watches the broker (first of `brokers`) and ClickHouse for
    /// [`IDLE_SAMPLE`], then reads their CPU time: the measurement starts.
    pub(crate) async fn start(brokers: &str, clickhouse_url: &str) -> Meter {
        let broker_port = brokers.split(',').next().and_then(port_of);
        let clickhouse_port = port_of(clickhouse_url);
        let (b0, c0, t0) = (sample(broker_port), sample(clickhouse_port), Instant::now());
        tokio::time::sleep(IDLE_SAMPLE).await;
        let (broker, clickhouse) = (sample(broker_port), sample(clickhouse_port));
        let seconds = t0.elapsed().as_secs_f64();
        let rate = |before: Option<(u32, f64)>, now: Option<(u32, f64)>| match (before, now) {
            (Some((p0, a)), Some((p1, b))) if p0 == p1 => Some((b - a).max(0.0) / seconds),
            _ => None,
        };
        Meter {
            started: Instant::now(),
            broker_idle: rate(b0, broker),
            clickhouse_idle: rate(c0, clickhouse),
            broker,
            clickhouse,
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
        let wall = self.started.elapsed().as_secs_f64();
        Cpu {
            consumer: consumer * per_million,
            broker: delta(self.broker),
            clickhouse: delta(self.clickhouse),
            broker_background: self.broker_idle.map(|r| r * wall * per_million),
            clickhouse_background: self.clickhouse_idle.map(|r| r * wall * per_million),
            wall: wall * per_million,
        }
    }
}

/// The printed table: per path, the median over runs of each column.
pub(crate) fn print_table(rows: &[(&str, Vec<Cpu>)]) {
    use usage_testkit::stats::median;
    println!(
        "CPU-seconds per million authorizations (start to last row stored, median over runs; \
         net: less the CPU the broker and ClickHouse spent for others, at their rate before the run):"
    );
    println!(
        "  {:<20} {:>10} {:>10} {:>11} {:>10} {:>11} {:>15} {:>10} {:>10}",
        "",
        "consumer",
        "broker",
        "clickhouse",
        "total",
        "broker net",
        "clickhouse net",
        "total net",
        "wall"
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
            "  {:<20} {:>10} {:>10} {:>11} {:>10} {:>11} {:>15} {:>10} {:>10}",
            path,
            col(&|c| Some(c.consumer)),
            col(&|c| c.broker),
            col(&|c| c.clickhouse),
            col(&|c| Some(c.total())),
            col(&|c| c.broker_net()),
            col(&|c| c.clickhouse_net()),
            col(&|c| Some(c.total_net())),
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
