//! Prometheus text scraped from a process's `/metrics`, and the values read
//! from it.

use std::fmt;
use std::time::Duration;

/// A sample of one process's Prometheus metrics (the text of `/metrics`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metrics(String);

impl Metrics {
    /// GET `http://127.0.0.1:<port>/metrics` (5 s at most); None if it does
    /// not answer with a success.
    pub async fn scrape(port: u16) -> Option<Metrics> {
        let response = http_client()
            .get(format!("http://127.0.0.1:{port}/metrics"))
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        Some(Metrics(response.text().await.ok()?))
    }

    /// Prometheus text read from elsewhere.
    pub fn from_text(text: impl Into<String>) -> Metrics {
        Metrics(text.into())
    }

    /// The text.
    pub fn text(&self) -> &str {
        &self.0
    }

    /// The sum of the samples whose series (name and labels) starts with
    /// `prefix`: `sum("usage_ingest_dead_letters_total")` adds every reason.
    pub fn sum(&self, prefix: &str) -> f64 {
        self.0
            .lines()
            .filter(|l| l.starts_with(prefix))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// The value of `name{...topic="<topic>"...}`, if there is such a sample.
    pub fn by_topic(&self, name: &str, topic: &str) -> Option<f64> {
        let label = format!("topic=\"{topic}\"");
        self.0
            .lines()
            .filter(|l| !l.starts_with('#'))
            .find(|l| {
                l.strip_prefix(name)
                    .is_some_and(|rest| rest.starts_with('{') && rest.contains(&label))
            })
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
    }
}

impl fmt::Display for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An HTTP client for a harness's requests to a local process: 5 s at most
/// per request. A new one each time: a test's runtime ends with the test,
/// and a shared client's pooled connections would outlive it.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP usage_ingest_dead_letters_total Dead letters.\n\
        # TYPE usage_ingest_dead_letters_total counter\n\
        usage_ingest_dead_letters_total{reason=\"malformed_json\"} 2\n\
        usage_ingest_dead_letters_total{reason=\"unknown_rate\"} 1\n\
        usage_ingest_assigned_partitions{topic=\"a.authorizations\"} 4\n\
        usage_ingest_assigned_partitions{topic=\"a.directory\"} 1\n";

    #[test]
    fn sums_and_reads_by_topic() {
        let metrics = Metrics::from_text(TEXT);
        assert_eq!(metrics.sum("usage_ingest_dead_letters_total"), 3.0);
        assert_eq!(
            metrics.sum("usage_ingest_dead_letters_total{reason=\"unknown_rate\"}"),
            1.0
        );
        assert_eq!(
            metrics.by_topic("usage_ingest_assigned_partitions", "a.authorizations"),
            Some(4.0)
        );
        assert_eq!(
            metrics.by_topic("usage_ingest_assigned_partitions", "b.authorizations"),
            None
        );
        assert_eq!(metrics.sum("usage_ingest_missing"), 0.0);
    }
}
