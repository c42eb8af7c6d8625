//! `usage-report`: the usage report over HTTP for admins — overview tiles,
//! per-user rows, exports, schedules and unassign requests — read from the
//! rollups the consumers keep in ClickHouse.

mod api;
mod background;
mod commands;
mod metrics;
mod request;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use usage_core::frequency::FrequentDaysPerMonth;
use usage_core::privacy::UserHasher;
use usage_report::admins::Admins;
use usage_report::export::ExportStore;
use usage_report::mail::{read_password, MailSettings, Mailer, Outbox, TlsMode};
use usage_report::page::AvatarOrigin;
use usage_report::report::{CacheLookup, Reporter};
use usage_report::schedule::{RunLog, ScheduleStore};
use usage_runtime::clickhouse::ClickHouseArgs;
use usage_store::Warehouse;

/// mimalloc: a report's state is built from a few hundred thousand rows of
/// short strings, and the system allocator's free lists took a fifth of
/// that CPU (BENCHMARKS.md, "Report latency").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The key `--dev` uses when no HMAC key is given. Public, so never private:
/// outside `--dev` the service refuses to start with it.
const DEV_HMAC_KEY: &str = "usage-report development key: not secret, not for production";

/// The directory, under the exports directory, of the last errors of
/// failing schedules.
const RUNS_DIR: &str = "schedule-runs";

/// The directory, under the exports directory, of the emails to send.
const OUTBOX_DIR: &str = "mail-outbox";

/// Serves the usage report to admins from the ClickHouse rollups.
///
/// Every option can also be set in a TOML file (--config) by its long name,
/// or by its environment variable. Precedence: command line, environment,
/// file, default.
#[derive(Debug, Parser)]
#[command(name = "usage-report", version)]
struct Cli {
    /// TOML file with any of the options below, by long name.
    #[arg(long, env = "USAGE_CONFIG")]
    config: Option<PathBuf>,
    /// Log as JSON lines instead of text.
    #[arg(long, env = "USAGE_LOG_JSON")]
    log_json: bool,

    #[command(flatten)]
    clickhouse: ClickHouseArgs,

    /// Address the HTTP API listens on.
    #[arg(
        long,
        env = "USAGE_REPORT_LISTEN",
        default_value = "127.0.0.1:8080",
        help_heading = "HTTP"
    )]
    listen: SocketAddr,
    /// TOML file of admins: id, email, role (primary|secondary|sso|user_admin),
    /// teams (or ["*"]) and the SHA-256 of their bearer token (see README).
    #[arg(
        long,
        env = "USAGE_REPORT_ADMINS_FILE",
        default_value = "admins.toml",
        help_heading = "Access"
    )]
    admins_file: PathBuf,
    /// How long a filter set's report is reused, in seconds: the page's
    /// overview, users pages and daily chart for the same filters share one
    /// computation, and data visible in the tables shows in the report at
    /// most this long later (0: every request computes its own, no cache).
    /// On one server (no --clickhouse-cluster) a report is also reused past
    /// this while nothing is written to the database's tables (its parts
    /// unchanged: nothing new to show).
    #[arg(
        long,
        env = "USAGE_REPORT_CACHE_SECS",
        default_value_t = 5,
        help_heading = "HTTP"
    )]
    report_cache_secs: u64,
    /// The most the cached reports may hold, in MB (with 64 filter sets at
    /// most): past it the least recently used go. A report of all teams
    /// holds about 0.15 MB per 1,000 users. The reports being computed
    /// (one of all teams, or two of one team, at once) count within it:
    /// room is made for each before it is built. The service needs about
    /// this, plus as much again as the report being finished, plus its own
    /// 30 MB.
    #[arg(
        long,
        env = "USAGE_REPORT_CACHE_MB",
        default_value_t = 32,
        help_heading = "HTTP"
    )]
    report_cache_mb: usize,
    /// The usage classes' threshold, in days used per month on average
    /// (0.01 to 31): a report line below it is `occasional`, at or above it
    /// `frequent` (no day used: `unused`). The default, 5, is about one
    /// working day a week; set it to where a seat starts paying for itself
    /// against Flex (a seat's monthly price divided by the price of a day
    /// of Flex tokens), so the occasional tile lists the seats worth moving.
    #[arg(
        long,
        env = "USAGE_REPORT_FREQUENT_DAYS_PER_MONTH",
        default_value_t = FrequentDaysPerMonth::DEFAULT,
        help_heading = "Report"
    )]
    frequent_days_per_month: FrequentDaysPerMonth,
    /// Origins the page may show profile images from, comma-separated
    /// (`https://host[:port]`, e.g. your directory's avatar CDN); the page's
    /// Content-Security-Policy allows exactly these. A user whose image is
    /// elsewhere, missing or fails to load shows initials.
    #[arg(
        long,
        env = "USAGE_REPORT_AVATAR_ORIGINS",
        value_delimiter = ',',
        help_heading = "HTTP"
    )]
    avatar_origins: Vec<AvatarOrigin>,
    /// File holding the secret key of the identity hash (at least 32 bytes;
    /// e.g. `openssl rand -hex 32`). Keep it stable: changing it changes
    /// every hashed user key.
    #[arg(long, env = "USAGE_REPORT_HMAC_KEY_FILE", help_heading = "Access")]
    hmac_key_file: Option<PathBuf>,
    /// The secret key of the identity hash itself (prefer --hmac-key-file).
    #[arg(
        long,
        env = "USAGE_REPORT_HMAC_KEY",
        hide_env_values = true,
        help_heading = "Access"
    )]
    hmac_key: Option<String>,
    /// Development mode: without a key, use a built-in (public) one. Never in
    /// production: hashed identities could be recomputed by anyone.
    #[arg(long, env = "USAGE_REPORT_DEV", help_heading = "Access")]
    dev: bool,

    /// Directory of export files (and their metadata).
    #[arg(
        long,
        env = "USAGE_REPORT_EXPORTS_DIR",
        default_value = ".local/exports",
        help_heading = "Exports and schedules"
    )]
    exports_dir: PathBuf,
    /// How often exports older than 14 days are deleted.
    #[arg(
        long,
        env = "USAGE_REPORT_SWEEP_INTERVAL_SECS",
        default_value_t = 3600,
        help_heading = "Exports and schedules"
    )]
    sweep_interval_secs: u64,
    /// How often due schedules are looked for and run (0: never; run the
    /// scheduler in one instance only).
    #[arg(
        long,
        env = "USAGE_REPORT_SCHEDULER_INTERVAL_SECS",
        default_value_t = 60,
        help_heading = "Exports and schedules"
    )]
    scheduler_interval_secs: u64,

    /// The SMTP server that sends the "report ready" emails (host name; also
    /// the name its TLS certificate must bear). No host: no emails (the
    /// notification is still published).
    #[arg(long, env = "USAGE_REPORT_SMTP_HOST", help_heading = "Mail")]
    smtp_host: Option<String>,
    /// Its port [default: 25 with --smtp-tls none, 587 with starttls, 465
    /// with tls].
    #[arg(long, env = "USAGE_REPORT_SMTP_PORT", help_heading = "Mail")]
    smtp_port: Option<u16>,
    /// How the connection is secured: none (a trusted relay only),
    /// starttls (required, not opportunistic) or tls (from the first byte).
    #[arg(
        long,
        env = "USAGE_REPORT_SMTP_TLS",
        value_enum,
        default_value = "starttls",
        help_heading = "Mail"
    )]
    smtp_tls: TlsMode,
    /// The user to authenticate as (with --smtp-password-file); none: no
    /// authentication.
    #[arg(long, env = "USAGE_REPORT_SMTP_USER", help_heading = "Mail")]
    smtp_user: Option<String>,
    /// File holding the SMTP password (its final line break ignored).
    #[arg(long, env = "USAGE_REPORT_SMTP_PASSWORD_FILE", help_heading = "Mail")]
    smtp_password_file: Option<PathBuf>,
    /// The emails' sender, e.g. "Usage report <usage@example.com>"
    /// (required with --smtp-host).
    #[arg(long, env = "USAGE_REPORT_MAIL_FROM", help_heading = "Mail")]
    mail_from: Option<String>,
    /// Where admins reach this service, e.g. https://usage.example.com: the
    /// emails link to <public-url>/?download=<export_id> (required with
    /// --smtp-host).
    #[arg(long, env = "USAGE_REPORT_PUBLIC_URL", help_heading = "Mail")]
    public_url: Option<String>,
    /// How often unsent emails are sent; a failed one waits this long,
    /// doubled after each failure, up to an hour.
    #[arg(
        long,
        env = "USAGE_REPORT_MAIL_INTERVAL_SECS",
        default_value_t = 30,
        help_heading = "Mail"
    )]
    mail_interval_secs: u64,

    /// Bootstrap brokers, comma-separated host:port.
    #[arg(
        long,
        env = "USAGE_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092",
        help_heading = "Kafka"
    )]
    kafka_brokers: String,
    /// Topic of the unassign requests sent upstream.
    #[arg(
        long,
        env = "USAGE_COMMANDS_TOPIC",
        default_value = usage_report::messages::DEFAULT_COMMANDS_TOPIC,
        help_heading = "Kafka"
    )]
    commands_topic: String,
    /// Topic of the "report ready" notifications for the mail system.
    #[arg(
        long,
        env = "USAGE_NOTIFICATIONS_TOPIC",
        default_value = usage_report::messages::DEFAULT_NOTIFICATIONS_TOPIC,
        help_heading = "Kafka"
    )]
    notifications_topic: String,
}

fn main() -> std::process::ExitCode {
    let cli: Cli = usage_runtime::config::parse();
    usage_runtime::logging::init(cli.log_json, "info");
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            eprintln!("usage-report: error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The identity-hash key: from the file or the environment; the public
/// development key only with `--dev`.
fn hmac_key(cli: &Cli) -> anyhow::Result<Vec<u8>> {
    let key = match (&cli.hmac_key_file, &cli.hmac_key) {
        (Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the HMAC key file {}", path.display()))?
            .trim_end()
            .to_owned(),
        (None, Some(key)) => key.clone(),
        (None, None) if cli.dev => DEV_HMAC_KEY.to_owned(),
        (None, None) => anyhow::bail!(
            "no HMAC key for hashing identities: give --hmac-key-file (or \
             USAGE_REPORT_HMAC_KEY), or --dev for a local trial"
        ),
    };
    anyhow::ensure!(
        cli.dev || key != DEV_HMAC_KEY,
        "the development HMAC key is public: give a secret one, or run with --dev"
    );
    Ok(key.into_bytes())
}

/// The mail settings, `None` (mail off) without an SMTP host.
fn mail_settings(cli: &Cli) -> anyhow::Result<Option<MailSettings>> {
    let Some(host) = cli.smtp_host.clone().filter(|h| !h.trim().is_empty()) else {
        if cli.mail_from.is_some() || cli.smtp_user.is_some() {
            tracing::warn!("mail settings given but no --smtp-host: no emails are sent");
        }
        return Ok(None);
    };
    let credentials = match (&cli.smtp_user, &cli.smtp_password_file) {
        (Some(user), Some(path)) => Some((
            user.clone(),
            read_password(path)
                .with_context(|| format!("reading the SMTP password file {}", path.display()))?,
        )),
        (None, None) => None,
        _ => anyhow::bail!("--smtp-user and --smtp-password-file go together"),
    };
    if credentials.is_some() && cli.smtp_tls == TlsMode::None {
        tracing::warn!("--smtp-tls none: the SMTP password crosses the network in clear text");
    }
    if cli.scheduler_interval_secs == 0 {
        tracing::warn!("mail is set up but this instance runs no scheduler (--scheduler-interval-secs 0): it sends no emails");
    }
    Ok(Some(MailSettings {
        host,
        port: cli.smtp_port,
        tls: cli.smtp_tls,
        credentials,
        from: cli
            .mail_from
            .clone()
            .context("--smtp-host needs --mail-from (the emails' sender)")?,
        public_url: cli
            .public_url
            .clone()
            .context("--smtp-host needs --public-url (the links' base)")?,
    }))
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let hasher = UserHasher::new(&hmac_key(&cli)?)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .context("the HMAC key")?;
    let admins = Admins::load(&cli.admins_file)?;
    if admins.is_empty() {
        tracing::warn!(file = %cli.admins_file.display(), "no admins configured: every /v1 request will be refused");
    }
    let warehouse = Warehouse::new(cli.clickhouse.settings()?)?;
    let exports = ExportStore::open(cli.exports_dir.clone()).with_context(|| {
        format!(
            "opening the exports directory {}",
            cli.exports_dir.display()
        )
    })?;
    let runs_dir = cli.exports_dir.join(RUNS_DIR);
    let runs = RunLog::open(&runs_dir)
        .with_context(|| format!("opening the schedule runs directory {}", runs_dir.display()))?;
    let mail = match mail_settings(&cli)? {
        Some(settings) => {
            let mailer = Mailer::new(&settings).context("the mail settings")?;
            let outbox_dir = cli.exports_dir.join(OUTBOX_DIR);
            let outbox = Outbox::open(&outbox_dir)
                .with_context(|| format!("opening the mail outbox {}", outbox_dir.display()))?;
            Some((mailer, outbox))
        }
        None => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let metrics = metrics::Metrics::new().context("registering metrics")?;
        let publisher = commands::Publisher::new(
            &cli.kafka_brokers,
            cli.commands_topic.clone(),
            cli.notifications_topic.clone(),
        )
        .map_err(|e| anyhow::anyhow!("creating the Kafka producer: {e}"))?;
        let mut reporter = Reporter::new(warehouse.client().clone(), hasher)
            .with_cache(
                Duration::from_secs(cli.report_cache_secs),
                cli.report_cache_mb << 20,
                {
                    let metrics = metrics.clone();
                    move |lookup| metrics.report_cache(lookup == CacheLookup::Hit)
                },
            )
            .with_frequent_days_per_month(cli.frequent_days_per_month);
        if cli.report_cache_secs > 0 && warehouse.cluster().is_none() {
            reporter = reporter.with_unchanged_data_reuse();
        }
        let state = api::AppState {
            admins: Arc::new(admins),
            reporter,
            exports,
            schedules: ScheduleStore::new(warehouse.client().clone()).with_runs(runs),
            publisher,
            metrics,
            page: Arc::new(usage_report::page::Page::new(
                api::page_template(),
                &cli.avatar_origins,
            )),
        };
        let listener = tokio::net::TcpListener::bind(cli.listen)
            .await
            .with_context(|| format!("listening on {}", cli.listen))?;
        let bound = listener.local_addr()?;
        background::spawn_sweeper(
            state.clone(),
            Duration::from_secs(cli.sweep_interval_secs.max(1)),
        );
        let mail_server = mail.as_ref().map(|(mailer, _)| mailer.server().to_owned());
        if cli.scheduler_interval_secs > 0 {
            // The mailer runs beside the one scheduler: it alone reads the
            // outbox the scheduler writes.
            let outbox = mail.as_ref().map(|(_, outbox)| outbox.clone());
            if let Some((mailer, outbox)) = mail {
                background::spawn_mailer(
                    mailer,
                    outbox,
                    state.metrics.clone(),
                    Duration::from_secs(cli.mail_interval_secs.max(1)),
                );
            }
            background::spawn_scheduler(
                state.clone(),
                Duration::from_secs(cli.scheduler_interval_secs),
                outbox,
            );
        }
        tracing::info!(
            listen = %bound,
            clickhouse = %warehouse.settings().url,
            database = %warehouse.database(),
            admins = state.admins.len(),
            exports = %cli.exports_dir.display(),
            dev = cli.dev,
            mail = mail_server.as_deref().unwrap_or("off"),
            "usage-report serving"
        );
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(usage_runtime::signal::stop_requested())
            .await
            .context("serving HTTP")?;
        tracing::info!("usage-report stopped");
        Ok(())
    })
}
