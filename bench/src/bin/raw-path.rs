//! The raw path the benchmark compares against: authorization events moved
//! from Kafka into a ClickHouse table with no processing at all — the JSON
//! forwarded as is to `INSERT ... FORMAT JSONEachRow`, in batches, offsets
//! committed after each insert. The minimal hand-rolled consumer.

use anyhow::Context;
use clap::Parser;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::Message;
use std::time::{Duration, Instant};

#[derive(Debug, Parser)]
struct Args {
    #[arg(long, default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long)]
    topic: String,
    #[arg(long)]
    group: String,
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    #[arg(long)]
    database: String,
    #[arg(long, default_value_t = 100_000)]
    batch_rows: usize,
    #[arg(long, default_value_t = 500)]
    batch_wait_ms: u64,
    /// Send `log_queries=1` with the inserts (their cost in system.query_log).
    #[arg(long)]
    log_queries: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let client = clickhouse::Client::default()
        .with_url(&args.clickhouse_url)
        .with_database(&args.database)
        .with_validation(false);
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", &args.brokers)
        .set("group.id", &args.group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.queue.backoff.ms", "10")
        .set("queued.max.messages.kbytes", "16384")
        .create()
        .context("consumer")?;
    consumer.subscribe(&[&args.topic]).context("subscribe")?;
    let mut body: Vec<u8> = Vec::with_capacity(32 << 20);
    let mut rows = 0usize;
    let mut opened: Option<Instant> = None;
    loop {
        let wait = opened.map_or(Duration::from_secs(3600), |o| {
            Duration::from_millis(args.batch_wait_ms).saturating_sub(o.elapsed())
        });
        match tokio::time::timeout(wait, consumer.recv()).await {
            Ok(Ok(message)) => {
                if let Some(payload) = message.payload() {
                    body.extend_from_slice(payload);
                    body.push(b'\n');
                    rows += 1;
                    opened.get_or_insert_with(Instant::now);
                }
            }
            Ok(Err(error)) => eprintln!("raw-path: {error}"),
            Err(_elapsed) => {}
        }
        let due = opened.is_some_and(|o| o.elapsed() >= Duration::from_millis(args.batch_wait_ms));
        if rows > 0 && (rows >= args.batch_rows || due) {
            let mut insert = client
                .insert_formatted_with("INSERT INTO raw_authorizations FORMAT JSONEachRow")
                .with_setting("input_format_skip_unknown_fields", "1")
                .with_setting("date_time_input_format", "best_effort");
            if args.log_queries {
                insert = insert.with_setting("log_queries", "1");
            }
            insert.send(std::mem::take(&mut body).into()).await?;
            insert.end().await?;
            consumer.commit_consumer_state(CommitMode::Async).ok();
            rows = 0;
            opened = None;
        }
    }
}
