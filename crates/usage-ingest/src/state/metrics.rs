//! The metrics of the enrichment state's cache (namespace `usage_ingest`),
//! updated once per batch.

use super::cache::{CacheReport, Part};
use prometheus::{
    exponential_buckets, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry,
};
use std::time::Duration;

const NAMESPACE: &str = "usage_ingest";

pub(crate) struct StateMetrics {
    entries: IntGauge,
    bytes: IntGauge,
    budget: IntGauge,
    hits: IntCounterVec,
    misses: IntCounterVec,
    evictions: IntCounter,
    unwritten: IntGauge,
    load_seconds: Histogram,
}

impl StateMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<StateMetrics, prometheus::Error> {
        let opts = |name: &str, help: &str| Opts::new(name, help).namespace(NAMESPACE);
        let gauge = |name: &str, help: &str| -> Result<IntGauge, prometheus::Error> {
            let g = IntGauge::with_opts(opts(name, help))?;
            registry.register(Box::new(g.clone()))?;
            Ok(g)
        };
        let counter = |name: &str, help: &str| -> Result<IntCounterVec, prometheus::Error> {
            let c = IntCounterVec::new(opts(name, help), &["state"])?;
            registry.register(Box::new(c.clone()))?;
            for part in Part::ALL {
                c.with_label_values(&[part.as_str()]);
            }
            Ok(c)
        };
        let evictions = IntCounter::with_opts(opts(
            "state_cache_evictions_total",
            "Users evicted from the enrichment state (with their assignments and Flex windows) \
             to keep it within --state-budget-mb.",
        ))?;
        registry.register(Box::new(evictions.clone()))?;
        let load_seconds = Histogram::with_opts(
            HistogramOpts::new(
                "state_load_seconds",
                "Time a batch spent reading enrichment state from ClickHouse (followed \
                 assignments and rates, users' histories, Flex windows), retries included.",
            )
            .namespace(NAMESPACE)
            .buckets(exponential_buckets(0.001, 2.0, 16)?),
        )?;
        registry.register(Box::new(load_seconds.clone()))?;
        Ok(StateMetrics {
            entries: gauge(
                "state_cache_entries",
                "Users whose state (assignment history, Flex windows) the enrichment state holds.",
            )?,
            bytes: gauge(
                "state_cache_bytes",
                "Estimated heap bytes of the enrichment state's users (after the last batch's evictions).",
            )?,
            budget: gauge(
                "state_cache_budget_bytes",
                "The enrichment state's byte budget (--state-budget-mb; 0: unbounded).",
            )?,
            hits: counter(
                "state_cache_hits_total",
                "Lookups answered by the enrichment state, by state (assignments: per user and \
                 batch; flex_windows: per (user, product) and batch).",
            )?,
            misses: counter(
                "state_cache_misses_total",
                "Lookups that read ClickHouse, by state (assignments: a user's history; \
                 flex_windows: a (user, product)'s windows).",
            )?,
            evictions,
            unwritten: gauge(
                "state_unwritten_batches",
                "Batches whose assignment events and Flex windows the state keeps aside until \
                 they are stored.",
            )?,
            load_seconds,
        })
    }

    pub(crate) fn budget(&self, bytes: Option<usize>) {
        self.budget
            .set(bytes.map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX)));
    }

    pub(crate) fn cache(&self, report: &CacheReport, unwritten_batches: usize) {
        let int = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.entries.set(int(report.entries));
        self.bytes.set(int(report.bytes));
        self.unwritten.set(int(unwritten_batches));
        self.evictions.inc_by(report.evictions);
        for part in Part::ALL {
            let label = [part.as_str()];
            self.hits
                .with_label_values(&label)
                .inc_by(report.hits(part));
            self.misses
                .with_label_values(&label)
                .inc_by(report.misses(part));
        }
    }

    pub(crate) fn loaded(&self, took: Duration) {
        self.load_seconds.observe(took.as_secs_f64());
    }
}
