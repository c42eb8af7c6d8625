//! The service's own work, beside the requests: the 14-day export sweeper
//! and the scheduler of recurring exports.

use std::time::Duration;

use chrono::Utc;
use usage_report::export::{scheduled_file_name, ExportMeta};
use usage_report::messages::{ReportReady, ReportReadyType};

use usage_report::error::ApiError;
use usage_report::schedule::RunError;

use crate::api::{run_export, AppState};

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
/// admin, publishes "report ready", then records the run. A failure leaves
/// the schedule due, so the next pass tries again.
pub(crate) fn spawn_scheduler(state: AppState, every: Duration) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            run_due(&state).await;
        }
    });
}

async fn run_due(state: &AppState) {
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
            notification_id: uuid::Uuid::new_v4().to_string(),
            kind: ReportReadyType::ReportReady,
            admin_id: admin.id.clone(),
            admin_email: admin.email.clone(),
            schedule_id: schedule.schedule_id.clone(),
            schedule_name: schedule.name.clone(),
            export_id: export.export_id.clone(),
            download_path: export.download_path.clone(),
            created_at: Utc::now(),
        };
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
