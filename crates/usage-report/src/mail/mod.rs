//! The "report ready" email: when a schedule's export is ready, its admin
//! gets an email with an absolute link to it, sent over SMTP (`lettre`,
//! TLS by rustls).
//!
//! - [`MailSettings`] and [`Mailer`]: the SMTP server, its TLS mode and
//!   credentials, the sender and the public URL the link is built from;
//!   the message itself ([`Mailer::message`], pure);
//! - `outbox`: [`Outbox`], the emails to send, on disk, by notification id:
//!   each run's email is recorded before it is sent and marked sent after,
//!   so a run sends one email across restarts and retries, and an SMTP
//!   server that is down delays it (tried again with backoff) but does not
//!   lose it.
//!
//! The link is `<public-url>/?download=<export_id>`: the page asks for
//! sign-in if needed, then downloads the file, which only the schedule's
//! admin may (`GET /v1/exports/{export_id}/download` checks the owner).

mod outbox;

use std::path::PathBuf;
use std::time::Duration;

use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

pub use outbox::{Outbox, Pending};

/// How long one SMTP exchange may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(30);

/// How the connection to the SMTP server is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsMode {
    /// Plain text (a trusted relay on the same host or network only).
    None,
    /// Plain text upgraded with STARTTLS, required (port 587 by default).
    Starttls,
    /// TLS from the first byte (SMTPS, port 465 by default).
    Tls,
}

impl TlsMode {
    /// The usual port of the mode.
    pub fn default_port(self) -> u16 {
        match self {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        }
    }
}

/// Where and how the emails are sent.
#[derive(Debug, Clone)]
pub struct MailSettings {
    /// The SMTP server's host name (also the name its certificate must have).
    pub host: String,
    /// Its port; the mode's usual one when `None`.
    pub port: Option<u16>,
    pub tls: TlsMode,
    /// The user name and password to authenticate with, if any.
    pub credentials: Option<(String, String)>,
    /// The sender, e.g. `Usage report <usage@example.com>`.
    pub from: String,
    /// Where admins reach the report page, e.g. `https://usage.example.com`
    /// (the links are built from it).
    pub public_url: String,
}

/// Why an email could not be built or sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// A setting is not usable.
    #[error("mail settings: {0}")]
    Settings(String),
    /// The admin's address is not an email address.
    #[error("the address {address:?} is not valid: {source}")]
    Address {
        address: String,
        #[source]
        source: lettre::address::AddressError,
    },
    /// The message could not be built.
    #[error("building the email: {0}")]
    Build(#[from] lettre::error::Error),
    /// The SMTP server refused it or could not be reached.
    #[error("sending the email: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
}

/// Sends the "report ready" emails.
#[derive(Clone)]
pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    public_url: String,
    server: String,
}

impl std::fmt::Debug for Mailer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mailer")
            .field("server", &self.server)
            .field("from", &self.from.to_string())
            .field("public_url", &self.public_url)
            .finish_non_exhaustive()
    }
}

/// The public URL without its trailing slashes, if it is an http(s) URL
/// with a host.
fn public_url(url: &str) -> Result<String, MailError> {
    let trimmed = url.trim().trim_end_matches('/');
    let rest = trimmed
        .strip_prefix("https://")
        .or_else(|| trimmed.strip_prefix("http://"));
    match rest {
        Some(host) if !host.is_empty() && !host.contains(['?', '#', ' ']) => Ok(trimmed.to_owned()),
        _ => Err(MailError::Settings(format!(
            "the public URL must be an http(s) URL such as https://usage.example.com, got {url:?}"
        ))),
    }
}

impl Mailer {
    /// A mailer for `settings` (no connection is made yet).
    pub fn new(settings: &MailSettings) -> Result<Mailer, MailError> {
        let from: Mailbox = settings.from.parse().map_err(|e| {
            MailError::Settings(format!(
                "the sender {:?} is not an address: {e}",
                settings.from
            ))
        })?;
        let public_url = public_url(&settings.public_url)?;
        let host = settings.host.trim();
        if host.is_empty() {
            return Err(MailError::Settings("the SMTP host is empty".into()));
        }
        let tls = match settings.tls {
            TlsMode::None => Tls::None,
            TlsMode::Starttls => Tls::Required(TlsParameters::new(host.to_owned())?),
            TlsMode::Tls => Tls::Wrapper(TlsParameters::new(host.to_owned())?),
        };
        let port = settings.port.unwrap_or(settings.tls.default_port());
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .tls(tls)
            .timeout(Some(SMTP_TIMEOUT));
        if let Some((user, password)) = &settings.credentials {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            public_url,
            server: format!("{host}:{port}"),
        })
    }

    /// The SMTP server, `host:port`.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The absolute link of an export: the page, which downloads it once
    /// its owner is signed in.
    pub fn link(&self, export_id: &str) -> String {
        format!("{}/?download={export_id}", self.public_url)
    }

    /// The email of a pending notification.
    pub fn message(&self, pending: &Pending) -> Result<Message, MailError> {
        let to: Mailbox = pending
            .admin_email
            .parse()
            .map_err(|source| MailError::Address {
                address: pending.admin_email.clone(),
                source,
            })?;
        let body = format!(
            "Your scheduled report \"{name}\" is ready: {file}.\n\
             \n\
             Download it (sign in as {admin} if asked):\n\
             {link}\n\
             \n\
             The link works for you only, until {expires} UTC, when the file is deleted.\n",
            name = pending.schedule_name,
            file = pending.file_name,
            admin = pending.admin_id,
            link = self.link(&pending.export_id),
            expires = pending.expires_at.format("%Y-%m-%d %H:%M"),
        );
        Ok(Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(format!(
                "Your scheduled report \"{}\" is ready",
                pending.schedule_name
            ))
            .message_id(Some(format!("<{}@usage-report>", pending.notification_id)))
            .header(ContentType::TEXT_PLAIN)
            .body(body)?)
    }

    /// Sends the email of `pending`.
    pub async fn send(&self, pending: &Pending) -> Result<(), MailError> {
        let message = self.message(pending)?;
        self.transport.send(message).await?;
        Ok(())
    }
}

/// Reads a password file: its content without the final line break.
pub fn read_password(path: &PathBuf) -> std::io::Result<String> {
    let text = std::fs::read_to_string(path)?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn settings() -> MailSettings {
        MailSettings {
            host: "smtp.example.com".into(),
            port: None,
            tls: TlsMode::Starttls,
            credentials: Some(("user".into(), "secret".into())),
            from: "Usage report <usage@example.com>".into(),
            public_url: "https://usage.example.com/".into(),
        }
    }

    fn pending() -> Pending {
        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap_or(DateTime::<Utc>::MIN_UTC);
        Pending {
            notification_id: "5f0c6f1e-0000-4000-8000-000000000001".into(),
            admin_id: "pat".into(),
            admin_email: "pat@example.com".into(),
            schedule_id: "s".into(),
            schedule_name: "Monthly \"seats\"".into(),
            export_id: "0b9d2c52-7c1e-4d8a-9f00-000000000002".into(),
            file_name: "Monthly-seats-2027-01-15.csv".into(),
            created_at: at,
            expires_at: at + chrono::TimeDelta::days(14),
            attempts: 0,
            next_attempt_at: at,
            sent_at: None,
            abandoned_at: None,
        }
    }

    /// The text of a quoted-printable body: soft line breaks joined, `=XX`
    /// decoded.
    fn unquote(text: &str) -> String {
        let joined = text.replace("=\r\n", "").replace("=\n", "");
        let mut out = Vec::new();
        let bytes = joined.as_bytes();
        let mut i = 0;
        while i < bytes.len() {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (bytes[i], hex) {
                (b'=', Some(byte)) => {
                    out.push(byte);
                    i += 3;
                }
                (byte, _) => {
                    out.push(byte);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    }

    #[test]
    fn the_email_has_the_absolute_link_and_goes_to_the_admin() {
        let mailer = Mailer::new(&settings()).expect("valid settings");
        assert_eq!(mailer.server(), "smtp.example.com:587");
        let text = unquote(
            &String::from_utf8(mailer.message(&pending()).expect("built").formatted())
                .expect("UTF-8"),
        );
        assert!(text.contains("To: pat@example.com"), "{text}");
        assert!(
            text.contains("From: \"Usage report\" <usage@example.com>"),
            "{text}"
        );
        assert!(
            text.contains(
                "https://usage.example.com/?download=0b9d2c52-7c1e-4d8a-9f00-000000000002"
            ),
            "{text}"
        );
        assert!(
            text.contains("Message-ID: <5f0c6f1e-0000-4000-8000-000000000001@usage-report>"),
            "{text}"
        );
        assert!(text.contains("Monthly-seats-2027-01-15.csv"), "{text}");
    }

    #[test]
    fn settings_are_checked() {
        for (change, what) in [
            (
                MailSettings {
                    from: "not an address".into(),
                    ..settings()
                },
                "sender",
            ),
            (
                MailSettings {
                    public_url: "usage.example.com".into(),
                    ..settings()
                },
                "public URL",
            ),
            (
                MailSettings {
                    public_url: "https://".into(),
                    ..settings()
                },
                "public URL",
            ),
            (
                MailSettings {
                    host: " ".into(),
                    ..settings()
                },
                "host",
            ),
        ] {
            let error = Mailer::new(&change).expect_err("refused").to_string();
            assert!(error.contains(what), "{error}");
        }
        let plain = Mailer::new(&MailSettings {
            tls: TlsMode::None,
            port: Some(2525),
            ..settings()
        })
        .expect("valid");
        assert_eq!(plain.server(), "smtp.example.com:2525");
        let mut bad = pending();
        bad.admin_email = "pat at example".into();
        assert!(matches!(
            plain.message(&bad),
            Err(MailError::Address { .. })
        ));
    }
}
