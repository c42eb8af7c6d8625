//! The emails to send, on disk: one `<notification_id>.json` per
//! notification in a directory of its own (`mail-outbox/` under the exports
//! directory), written atomically, kept after sending as the record that it
//! was sent, and deleted some days after its export expired.
//!
//! The scheduler records a run's email ([`Outbox::enqueue`]) before it
//! publishes the notification and records the run; the mailer sends what
//! is due ([`Outbox::due`]) and marks it sent ([`Outbox::sent`]) or tried
//! ([`Outbox::failed`], with backoff). A notification already sent is never
//! recorded again, so a run retried or a restarted service sends no second
//! email. The one gap is a crash between the server's acceptance and the
//! record of it: the email is then sent again (at least once, by the same
//! `Message-ID`).

use std::io;
use std::path::PathBuf;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::records::{open_private_dir, uuid_stem, write_atomic};

/// How long after its export expired an entry is kept (sent or not).
const KEEP_AFTER_EXPIRY: TimeDelta = TimeDelta::days(7);

/// One notification's email.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// The notification's id (the idempotency key).
    pub notification_id: String,
    pub admin_id: String,
    /// Where the email goes.
    pub admin_email: String,
    pub schedule_id: String,
    pub schedule_name: String,
    pub export_id: String,
    pub file_name: String,
    pub created_at: DateTime<Utc>,
    /// When the export expires: the email is not sent after it.
    pub expires_at: DateTime<Utc>,
    /// Failed attempts so far.
    pub attempts: u32,
    /// Not tried before then.
    pub next_attempt_at: DateTime<Utc>,
    /// When the SMTP server accepted it.
    pub sent_at: Option<DateTime<Utc>>,
    /// When it was given up (its export expired before it could be sent).
    pub abandoned_at: Option<DateTime<Utc>>,
}

/// The outbox on disk. Blocking (`std::fs`): call it from `spawn_blocking`.
#[derive(Debug, Clone)]
pub struct Outbox {
    dir: PathBuf,
}

impl Outbox {
    /// The outbox in `dir`, created (private to the service's user) if
    /// missing.
    pub fn open(dir: impl Into<PathBuf>) -> io::Result<Outbox> {
        let dir = dir.into();
        open_private_dir(&dir)?;
        Ok(Outbox { dir })
    }

    fn path(&self, notification_id: &str) -> io::Result<PathBuf> {
        uuid_stem(notification_id)
            .map(|s| self.dir.join(format!("{s}.json")))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("not a notification id: {notification_id:?}"),
                )
            })
    }

    fn read(&self, path: &std::path::Path) -> io::Result<Option<Pending>> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(io::Error::other),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn write(&self, pending: &Pending) -> io::Result<()> {
        let path = self.path(&pending.notification_id)?;
        let json = serde_json::to_vec_pretty(pending).map_err(io::Error::other)?;
        write_atomic(&self.dir, &path, &json)
    }

    /// Records the email of a notification, to be sent. Returns `false`
    /// (and changes nothing) when this notification's email was already
    /// sent or given up; an unsent one is replaced (a retried run's newer
    /// export).
    pub fn enqueue(&self, pending: &Pending) -> io::Result<bool> {
        let path = self.path(&pending.notification_id)?;
        if let Some(old) = self.read(&path)? {
            if old.sent_at.is_some() || old.abandoned_at.is_some() {
                return Ok(false);
            }
        }
        self.write(pending)?;
        Ok(true)
    }

    /// One notification's entry.
    pub fn get(&self, notification_id: &str) -> io::Result<Option<Pending>> {
        self.read(&self.path(notification_id)?)
    }

    /// Every entry; unreadable ones are logged and skipped.
    fn all(&self) -> io::Result<Vec<(PathBuf, Pending)>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            let is_entry = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
                .is_some_and(|s| uuid_stem(s).is_some());
            if !is_entry {
                continue;
            }
            match self.read(&path) {
                Ok(Some(pending)) => out.push((path, pending)),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "unreadable mail outbox entry skipped")
                }
            }
        }
        Ok(out)
    }

    /// The emails to send at `now`, oldest first: not sent, not given up,
    /// their next attempt come.
    pub fn due(&self, now: DateTime<Utc>) -> io::Result<Vec<Pending>> {
        let mut due: Vec<Pending> = self
            .all()?
            .into_iter()
            .map(|(_, p)| p)
            .filter(|p| p.sent_at.is_none() && p.abandoned_at.is_none())
            .filter(|p| p.next_attempt_at <= now)
            .collect();
        due.sort_by(|a, b| {
            a.created_at
                .cmp(&b.created_at)
                .then_with(|| a.notification_id.cmp(&b.notification_id))
        });
        Ok(due)
    }

    /// Marks the email sent at `at`.
    pub fn sent(&self, pending: &Pending, at: DateTime<Utc>) -> io::Result<()> {
        self.write(&Pending {
            sent_at: Some(at),
            ..pending.clone()
        })
    }

    /// Records a failed attempt at `now`: the next one waits `first_delay`
    /// doubled for each failure before, at most `max_delay`.
    pub fn failed(
        &self,
        pending: &Pending,
        now: DateTime<Utc>,
        first_delay: TimeDelta,
        max_delay: TimeDelta,
    ) -> io::Result<()> {
        let attempts = pending.attempts.saturating_add(1);
        let factor = 1_i32 << attempts.saturating_sub(1).min(20);
        let delay = first_delay
            .checked_mul(factor)
            .unwrap_or(max_delay)
            .min(max_delay);
        self.write(&Pending {
            attempts,
            next_attempt_at: now + delay,
            ..pending.clone()
        })
    }

    /// Gives the email up at `now` (its export expired).
    pub fn abandon(&self, pending: &Pending, now: DateTime<Utc>) -> io::Result<()> {
        self.write(&Pending {
            abandoned_at: Some(now),
            ..pending.clone()
        })
    }

    /// Deletes the entries whose export expired more than 7 days before
    /// `now`. Returns how many.
    pub fn sweep(&self, now: DateTime<Utc>) -> io::Result<usize> {
        let mut deleted = 0;
        for (path, pending) in self.all()? {
            if pending.expires_at + KEEP_AFTER_EXPIRY < now {
                std::fs::remove_file(&path)?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap_or(DateTime::<Utc>::MIN_UTC)
    }

    fn pending(id: &str, created: i64) -> Pending {
        Pending {
            notification_id: id.into(),
            admin_id: "pat".into(),
            admin_email: "pat@example.com".into(),
            schedule_id: "s".into(),
            schedule_name: "n".into(),
            export_id: Uuid::new_v4().to_string(),
            file_name: "n-2027-01-15.csv".into(),
            created_at: at(created),
            expires_at: at(created) + TimeDelta::days(14),
            attempts: 0,
            next_attempt_at: at(created),
            sent_at: None,
            abandoned_at: None,
        }
    }

    struct Scratch(PathBuf);
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn an_email_is_sent_once_and_retried_with_backoff() {
        let dir = Scratch(std::env::temp_dir().join(format!("outbox-{}", Uuid::new_v4().simple())));
        let outbox = Outbox::open(&dir.0).expect("opened");
        let (a, b) = (Uuid::new_v4().to_string(), Uuid::new_v4().to_string());
        assert!(outbox.enqueue(&pending(&b, 10)).expect("recorded"));
        assert!(outbox.enqueue(&pending(&a, 0)).expect("recorded"));
        let due: Vec<String> = outbox
            .due(at(20))
            .expect("read")
            .into_iter()
            .map(|p| p.notification_id)
            .collect();
        assert_eq!(due, vec![a.clone(), b.clone()]);
        assert_eq!(outbox.due(at(5)).expect("read").len(), 1);

        // A failure waits 1 s, then 2 s, 4 s, ... at most 5 s.
        let second = TimeDelta::seconds(1);
        let mut p = outbox.get(&a).expect("read").expect("there");
        let mut waits = Vec::new();
        for _ in 0..5 {
            outbox
                .failed(&p, at(100), second, TimeDelta::seconds(5))
                .expect("recorded");
            p = outbox.get(&a).expect("read").expect("there");
            waits.push((p.next_attempt_at - at(100)).num_seconds());
        }
        assert_eq!(waits, vec![1, 2, 4, 5, 5]);
        assert_eq!(p.attempts, 5);
        assert!(outbox
            .due(at(104))
            .expect("read")
            .iter()
            .all(|d| d.notification_id != a));

        // Sent: never due again, and enqueueing it again changes nothing.
        outbox.sent(&p, at(110)).expect("recorded");
        assert!(outbox
            .due(at(1000))
            .expect("read")
            .iter()
            .all(|d| d.notification_id != a));
        assert!(!outbox.enqueue(&pending(&a, 0)).expect("read"));
        assert_eq!(
            outbox.get(&a).expect("read").and_then(|p| p.sent_at),
            Some(at(110))
        );
        // An unsent one is replaced (a newer export of the same run).
        let newer = pending(&b, 30);
        assert!(outbox.enqueue(&newer).expect("recorded"));
        assert_eq!(outbox.get(&b).expect("read"), Some(newer.clone()));
        outbox.abandon(&newer, at(40)).expect("recorded");
        assert!(outbox.due(at(1000)).expect("read").is_empty());

        // Entries go 7 days after their export expired.
        assert_eq!(outbox.sweep(at(0) + TimeDelta::days(20)).expect("swept"), 0);
        assert_eq!(outbox.sweep(at(0) + TimeDelta::days(22)).expect("swept"), 2);
        assert!(outbox.get("../../etc/passwd").is_err());
    }
}
