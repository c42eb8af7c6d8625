//! The service's own work, beside the requests: the 14-day export sweeper,
//! the scheduler of recurring exports and the mailer of their "report
//! ready" emails (off the exports' path: an SMTP server that is down delays
//! an email, never an export).

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use usage_report::export::{scheduled_file_name, ExportMeta};
use usage_report::mail::{MailError, Mailer, Outbox, Pending};
use usage_report::messages::{ReportReady, ReportReadyType};

use usage_report::error::ApiError;
use usage_report::schedule::RunError;

use crate::api::{run_export, AppState};
use crate::metrics::Metrics;

/// The longest wait between two attempts at an email.
const MAX_MAIL_BACKOFF: TimeDelta = TimeDelta::hours(1);

/// Deletes expired exports every `every` (and once at start).
pub(crate) fn spawn_sweeper(state: AppState, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            let store = state.exports.clone();
            match tokio::task::spawn_blocking(move || store.sweep(Utc::now())).await {
                Ok(Ok(report)) => {
                    state
                        .metrics
                        .swept(report.deleted, report.tombstones_removed);
                    if report.deleted > 0 {
                        tracing::info!(deleted = report.deleted, "expired exports deleted");
                    }
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "export sweep failed"),
                Err(e) => tracing::warn!(error = %e, "export sweep panicked"),
            }
        }
    });
}

/// Runs due schedules every `every`: writes the export as the schedule's
/// admin, records its email in `outbox` (when mail is on), publishes
/// "report ready", then records the run. A failure leaves the schedule
/// due, so the next pass tries again (with the same notification id).
pub(crate) fn spawn_scheduler(state: AppState, every: Duration, outbox: Option<Outbox>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            run_due(&state, outbox.as_ref()).await;
        }
    });
}

async fn run_due(state: &AppState, outbox: Option<&Outbox>) {
    let today = Utc::now().date_naive();
    let due = match state.schedules.due(today).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read due schedules");
            return;
        }
    };
    for schedule in due {
        let Some(admin) = state.admins.by_id(&schedule.owner_admin_id) else {
            tracing::warn!(schedule_id = %schedule.schedule_id, "the schedule's admin is no longer configured: not run");
            state.metrics.schedule_run("owner_unknown");
            continue;
        };
        let export = match run_export(
            state,
            admin,
            schedule.kind,
            schedule.format,
            schedule.filters.clone(),
            Some(schedule.schedule_id.clone()),
        )
        .await
        {
            Ok(export) => export,
            Err(e) => {
                tracing::warn!(schedule_id = %schedule.schedule_id, error = %e, "scheduled export failed");
                state.metrics.schedule_run("failed");
                record_run(state, &schedule.schedule_id, Some(&e)).await;
                continue;
            }
        };
        record_run(state, &schedule.schedule_id, None).await;
        let export = name_after_schedule(state, export, &schedule.name, today).await;
        let note = ReportReady {
            notification_id: schedule.run_notification_id(),
            kind: ReportReadyType::ReportReady,
            admin_id: admin.id.clone(),
            admin_email: admin.email.clone(),
            schedule_id: schedule.schedule_id.clone(),
            schedule_name: schedule.name.clone(),
            export_id: export.export_id.clone(),
            download_path: export.download_path.clone(),
            created_at: Utc::now(),
        };
        if let Some(outbox) = outbox {
            if let Err(e) = enqueue(outbox, &note, &export).await {
                tracing::warn!(schedule_id = %schedule.schedule_id, error = %e, "the report's email not recorded; will run again");
                state.metrics.email_failed("outbox");
                state.metrics.schedule_run("failed");
                continue;
            }
        }
        if let Err(e) = state.publisher.report_ready(&note).await {
            tracing::warn!(schedule_id = %schedule.schedule_id, error = %e, "report-ready notification not published; will run again");
            state.metrics.schedule_run("failed");
            continue;
        }
        if let Err(e) = state.schedules.mark_run(&schedule, today, Utc::now()).await {
            tracing::warn!(schedule_id = %schedule.schedule_id, error = %e, "run not recorded; it may run again");
        }
        state.metrics.schedule_run("ok");
        tracing::info!(schedule_id = %schedule.schedule_id, export_id = %export.export_id, "scheduled report ready");
    }
}

/// Names a scheduled export after its schedule and the run's date (see
/// [`scheduled_file_name`]). Should that fail, the export keeps its
/// generic name: the run still counts.
async fn name_after_schedule(
    state: &AppState,
    export: ExportMeta,
    schedule_name: &str,
    run_date: chrono::NaiveDate,
) -> ExportMeta {
    let store = state.exports.clone();
    let id = export.export_id.clone();
    let name = scheduled_file_name(schedule_name, export.format, run_date);
    match tokio::task::spawn_blocking(move || store.rename(&id, name)).await {
        Ok(Ok(Some(renamed))) => renamed,
        Ok(Ok(None)) => export,
        Ok(Err(e)) => {
            tracing::warn!(export_id = %export.export_id, error = %e, "scheduled export keeps its generic name");
            export
        }
        Err(e) => {
            tracing::warn!(export_id = %export.export_id, error = %e, "scheduled export keeps its generic name");
            export
        }
    }
}

/// Records the outcome of a schedule's export for its owner: the error of a
/// failed run (shown as its `last_error`), or that it ran (the error is
/// forgotten).
async fn record_run(state: &AppState, schedule_id: &str, failure: Option<&ApiError>) {
    let Some(runs) = state.schedules.runs().cloned() else {
        return;
    };
    let id = schedule_id.to_owned();
    let failure = failure.map(|e| RunError {
        at: Utc::now(),
        error: e.code().to_owned(),
        message: e.message().to_owned(),
    });
    let recorded = tokio::task::spawn_blocking(move || match failure {
        Some(error) => runs.failed(&id, &error),
        None => runs.succeeded(&id),
    })
    .await;
    match recorded {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            tracing::warn!(schedule_id, error = %e, "the schedule's run not recorded")
        }
        Err(e) => tracing::warn!(schedule_id, error = %e, "the schedule's run not recorded"),
    }
}

/// Records the email of a run's notification in the outbox (a notification
/// whose email was already sent is left as it is).
async fn enqueue(outbox: &Outbox, note: &ReportReady, export: &ExportMeta) -> std::io::Result<()> {
    let pending = Pending {
        notification_id: note.notification_id.clone(),
        admin_id: note.admin_id.clone(),
        admin_email: note.admin_email.clone(),
        schedule_id: note.schedule_id.clone(),
        schedule_name: note.schedule_name.clone(),
        export_id: export.export_id.clone(),
        file_name: export.file_name.clone(),
        created_at: note.created_at,
        expires_at: export.expires_at,
        attempts: 0,
        next_attempt_at: note.created_at,
        sent_at: None,
        abandoned_at: None,
    };
    let outbox = outbox.clone();
    let recorded = tokio::task::spawn_blocking(move || outbox.enqueue(&pending))
        .await
        .map_err(std::io::Error::other)??;
    if !recorded {
        tracing::info!(notification_id = %note.notification_id, "the run's email was already sent");
    }
    Ok(())
}

/// Sends the outbox's due emails every `every` (and once at start); a
/// failed one waits `every`, doubled after each failure up to an hour.
pub(crate) fn spawn_mailer(mailer: Mailer, outbox: Outbox, metrics: Metrics, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        let first_delay = TimeDelta::from_std(every).unwrap_or(MAX_MAIL_BACKOFF);
        loop {
            tick.tick().await;
            send_due(&mailer, &outbox, &metrics, first_delay).await;
        }
    });
}

async fn outbox_io<T: Send + 'static>(
    outbox: &Outbox,
    work: impl FnOnce(&Outbox) -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    let outbox = outbox.clone();
    tokio::task::spawn_blocking(move || work(&outbox))
        .await
        .map_err(std::io::Error::other)?
}

async fn send_due(mailer: &Mailer, outbox: &Outbox, metrics: &Metrics, first_delay: TimeDelta) {
    let now = Utc::now();
    if let Err(e) = outbox_io(outbox, move |o| o.sweep(now)).await {
        tracing::warn!(error = %e, "mail outbox sweep failed");
    }
    let due = match outbox_io(outbox, move |o| o.due(now)).await {
        Ok(due) => due,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the mail outbox");
            metrics.email_failed("outbox");
            return;
        }
    };
    for pending in due {
        let id = pending.notification_id.clone();
        let now = Utc::now();
        let recorded = if now >= pending.expires_at {
            tracing::warn!(notification_id = %id, admin = %pending.admin_id, "the export expired before its email could be sent: given up");
            metrics.email_failed("expired");
            outbox_io(outbox, move |o| o.abandon(&pending, now)).await
        } else {
            match mailer.send(&pending).await {
                Ok(()) => {
                    tracing::info!(notification_id = %id, admin = %pending.admin_id, export_id = %pending.export_id, "report email sent");
                    metrics.email_sent();
                    outbox_io(outbox, move |o| o.sent(&pending, now)).await
                }
                Err(e) => {
                    let reason = match e {
                        MailError::Address { .. } => "address",
                        _ => "smtp",
                    };
                    tracing::warn!(notification_id = %id, server = mailer.server(), attempts = pending.attempts + 1, error = %e, "report email not sent; will try again");
                    metrics.email_failed(reason);
                    outbox_io(outbox, move |o| {
                        o.failed(&pending, now, first_delay, MAX_MAIL_BACKOFF)
                    })
                    .await
                }
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(notification_id = %id, error = %e, "mail outbox not updated");
        }
    }
}
