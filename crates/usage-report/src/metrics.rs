//! Prometheus metrics of `usage-report` (namespace `usage_report`): one
//! update per request, export, sweep or scheduler pass.

use std::sync::Arc;

use prometheus::{
    exponential_buckets, Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry,
    TextEncoder,
};

const NAMESPACE: &str = "usage_report";

/// Every metric of the process. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Metrics(Arc<Inner>);

struct Inner {
    registry: Registry,
    requests: IntCounterVec,
    request_seconds: HistogramVec,
    exports: IntCounterVec,
    exports_swept: IntCounterVec,
    schedule_runs: IntCounterVec,
    emails_sent: IntCounterVec,
    email_failures: IntCounterVec,
    unassign_requests: IntCounterVec,
    cache_hits: IntCounterVec,
    cache_misses: IntCounterVec,
}

impl Metrics {
    pub(crate) fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help).namespace(NAMESPACE), labels)?;
            registry.register(Box::new(c.clone()))?;
            Ok::<_, prometheus::Error>(c)
        };
        let requests = counter(
            "requests_total",
            "HTTP requests answered, by route and status code.",
            &["route", "status"],
        )?;
        let request_seconds = HistogramVec::new(
            HistogramOpts::new(
                "request_duration_seconds",
                "Time to answer an HTTP request, by route.",
            )
            .namespace(NAMESPACE)
            .buckets(exponential_buckets(0.001, 2.0, 15)?),
            &["route"],
        )?;
        registry.register(Box::new(request_seconds.clone()))?;
        let exports = counter(
            "exports_total",
            "Export files written, by kind, format and origin (request or schedule).",
            &["kind", "format", "origin"],
        )?;
        let exports_swept = counter(
            "exports_swept_total",
            "Export files deleted by the 14-day sweeper (`deleted`) and tombstones removed (`tombstone`).",
            &["what"],
        )?;
        let schedule_runs = counter(
            "schedule_runs_total",
            "Scheduled exports run, by outcome (ok, failed, owner_unknown).",
            &["outcome"],
        )?;
        let emails_sent = counter(
            "emails_sent_total",
            "\"Report ready\" emails the SMTP server accepted.",
            &[],
        )?;
        let email_failures = counter(
            "email_failures_total",
            "\"Report ready\" emails not sent, by reason: smtp (the server was unreachable or \
             refused it; tried again later), address (the admin's address is not valid), \
             expired (its export expired first: given up), outbox (the outbox on disk failed).",
            &["reason"],
        )?;
        let unassign_requests = counter(
            "unassign_requests_total",
            "Unassign requests, by outcome (published, refused, failed).",
            &["outcome"],
        )?;
        let cache_hits = counter(
            "cache_hits_total",
            "Report requests (overview, users page, daily chart, export) served from the \
             brief report cache, or waiting for the same filters' computation under way.",
            &[],
        )?;
        let cache_misses = counter(
            "cache_misses_total",
            "Report requests that computed their filter set's report (a cache miss, or \
             --report-cache-secs 0).",
            &[],
        )?;
        Ok(Metrics(Arc::new(Inner {
            registry,
            requests,
            request_seconds,
            exports,
            exports_swept,
            schedule_runs,
            emails_sent,
            email_failures,
            unassign_requests,
            cache_hits,
            cache_misses,
        })))
    }

    pub(crate) fn request(&self, route: &str, status: u16, seconds: f64) {
        self.0
            .requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.0
            .request_seconds
            .with_label_values(&[route])
            .observe(seconds);
    }

    pub(crate) fn export(&self, kind: &str, format: &str, origin: &str) {
        self.0
            .exports
            .with_label_values(&[kind, format, origin])
            .inc();
    }

    pub(crate) fn swept(&self, deleted: u64, tombstones: u64) {
        self.0
            .exports_swept
            .with_label_values(&["deleted"])
            .inc_by(deleted);
        self.0
            .exports_swept
            .with_label_values(&["tombstone"])
            .inc_by(tombstones);
    }

    pub(crate) fn schedule_run(&self, outcome: &str) {
        self.0.schedule_runs.with_label_values(&[outcome]).inc();
    }

    pub(crate) fn email_sent(&self) {
        self.0.emails_sent.with_label_values(&[] as &[&str]).inc();
    }

    pub(crate) fn email_failed(&self, reason: &str) {
        self.0.email_failures.with_label_values(&[reason]).inc();
    }

    pub(crate) fn unassign(&self, outcome: &str) {
        self.0.unassign_requests.with_label_values(&[outcome]).inc();
    }

    /// A lookup of the report cache.
    pub(crate) fn report_cache(&self, hit: bool) {
        let counter = if hit {
            &self.0.cache_hits
        } else {
            &self.0.cache_misses
        };
        counter.with_label_values(&[] as &[&str]).inc();
    }

    /// The Prometheus text exposition.
    pub(crate) fn render(&self) -> String {
        let mut out = Vec::new();
        let families = self.0.registry.gather();
        if let Err(e) = TextEncoder::new().encode(&families, &mut out) {
            tracing::warn!(error = %e, "encoding metrics");
        }
        String::from_utf8(out).unwrap_or_default()
    }
}
