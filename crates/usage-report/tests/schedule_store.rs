//! The schedule store against a real ClickHouse: a scratch database with the
//! migrations applied, then five schedules per admin and no more, owners
//! isolated from each other, hostile text in names and filters, runs and
//! edits, deletes. Skipped (with a note) when no ClickHouse answers and
//! `USAGE_CLICKHOUSE_URL` is not set.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use clickhouse::Client;
use usage_report::admins::{Admin, Role, Teams};
use usage_report::model::{ExportFormat, ExportKind, ReportParams};
use usage_report::schedule::{Frequency, ScheduleInput, ScheduleStore};

fn d(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").expect("a date")
}

fn at(text: &str) -> DateTime<Utc> {
    let day = d(text);
    Utc.from_utc_datetime(&day.and_hms_opt(12, 0, 0).expect("noon"))
}

fn input(name: &str, start: &str) -> ScheduleInput {
    ScheduleInput {
        name: name.to_owned(),
        start_date: d(start),
        frequency: Frequency::Weekly,
        format: ExportFormat::Csv,
        kind: ExportKind::Report,
        filters: ReportParams::default(),
    }
}

/// The server to test against: `USAGE_CLICKHOUSE_URL` (which must answer),
/// or the local one when it answers; `None`: skip.
async fn clickhouse_url() -> Option<String> {
    if let Ok(url) = std::env::var("USAGE_CLICKHOUSE_URL") {
        return Some(url);
    }
    let url = "http://127.0.0.1:8123".to_owned();
    let probe = Client::default()
        .with_url(url.clone())
        .with_validation(false);
    let answer = tokio::time::timeout(
        std::time::Duration::from_secs(3),
        probe.query("SELECT 1").fetch_one::<u8>(),
    )
    .await;
    match answer {
        Ok(Ok(1)) => Some(url),
        _ => {
            eprintln!("skipped: no ClickHouse at {url} (scripts/services up)");
            None
        }
    }
}

fn admin(id: &str, role: Role) -> Admin {
    Admin {
        id: id.to_owned(),
        email: format!("{id}@example.com"),
        role,
        teams: Teams::Every,
    }
}

#[tokio::test]
async fn the_store_keeps_schedules_per_admin() {
    use usage_store::{migrate, Warehouse, WarehouseSettings};

    let Some(url) = clickhouse_url().await else {
        return;
    };
    let nanos = Utc::now().timestamp_subsec_nanos();
    let settings = WarehouseSettings {
        url,
        database: format!("test_schedules_{}_{nanos}", std::process::id()),
        ..WarehouseSettings::default()
    };
    let warehouse = Warehouse::new(settings).expect("valid settings");
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../schemas/clickhouse");
    let migrations = migrate::load_dir(std::path::Path::new(dir)).expect("migrations load");
    migrate::apply(&warehouse, &migrations)
        .await
        .expect("migrations apply");
    let store = ScheduleStore::new(warehouse.client().clone());

    let outcome = exercise(&store).await;
    warehouse
        .server_client()
        .query(&format!("DROP DATABASE IF EXISTS {}", warehouse.database()))
        .execute()
        .await
        .expect("drop the scratch database");
    outcome.expect("the store behaves");
}

/// The scenario; an `Err` (rather than a panic) lets the caller drop the
/// scratch database first.
async fn exercise(store: &ScheduleStore) -> Result<(), String> {
    let check = |ok: bool, what: &str| if ok { Ok(()) } else { Err(what.to_owned()) };
    let now = at("2026-03-15");
    let today = now.date_naive();
    let ada = admin("ada", Role::Primary);
    let bob = admin("bob", Role::Sso);
    let uma = admin("uma", Role::UserAdmin);

    let err = store
        .create(&uma, input("mine", "2026-03-15"), now)
        .await
        .err()
        .ok_or("a user admin may not schedule")?;
    check(err.status().as_u16() == 403, "403 for a user admin")?;
    let err = store
        .create(&ada, input("old", "2026-03-01"), now)
        .await
        .err()
        .ok_or("a past start date is refused")?;
    check(err.code() == "invalid_start_date", "invalid start date")?;

    // Five schedules: one daily from today, the others later.
    let mut made = Vec::new();
    for i in 0..5 {
        let mut body = input(&format!(" schedule {i} "), "2026-03-20");
        if i == 0 {
            body.start_date = today;
            body.frequency = Frequency::Daily;
            body.filters = serde_json::from_value(
                serde_json::json!({"team": "t1", "range": "last_3_months", "q": "o'brien\\"}),
            )
            .map_err(|e| e.to_string())?;
        }
        let s = store
            .create(&ada, body, now)
            .await
            .map_err(|e| e.to_string())?;
        check(s.name == format!("schedule {i}"), "the name is trimmed")?;
        made.push(s);
    }
    let err = store
        .create(&ada, input("sixth", "2026-03-20"), now)
        .await
        .err()
        .ok_or("the sixth schedule is refused")?;
    check(err.code() == "schedule_limit", "schedule_limit")?;
    check(err.status().as_u16() == 409, "409 for the sixth")?;

    let listed = store.list("ada").await.map_err(|e| e.to_string())?;
    check(listed == made, "list gives what create gave, oldest first")?;
    let first = store
        .get("ada", &made[0].schedule_id)
        .await
        .map_err(|e| e.to_string())?;
    check(
        first.as_ref() == Some(&made[0]),
        "get gives what create gave",
    )?;

    // Another admin sees nothing and can change nothing.
    check(
        store
            .list("bob")
            .await
            .map_err(|e| e.to_string())?
            .is_empty(),
        "bob lists nothing",
    )?;
    let id = made[1].schedule_id.clone();
    check(
        store
            .get("bob", &id)
            .await
            .map_err(|e| e.to_string())?
            .is_none(),
        "bob cannot get ada's",
    )?;
    let updated = store
        .update(&bob, &id, input("stolen", "2026-03-20"), now)
        .await
        .map_err(|e| e.to_string())?;
    check(updated.is_none(), "bob cannot update ada's")?;
    check(
        !store.delete(&bob, &id).await.map_err(|e| e.to_string())?,
        "bob cannot delete ada's",
    )?;
    check(
        store.list("ada").await.map_err(|e| e.to_string())? == made,
        "ada's schedules unchanged",
    )?;
    // Bob has a limit of his own.
    store
        .create(&bob, input("bob's", "2026-03-20"), now)
        .await
        .map_err(|e| e.to_string())?;

    // Due today: only the daily one; it runs and is not due again today.
    let due = store.due(today).await.map_err(|e| e.to_string())?;
    check(due == vec![made[0].clone()], "only the daily one is due")?;
    store
        .mark_run(&due[0], today, now)
        .await
        .map_err(|e| e.to_string())?;
    check(
        store
            .due(today)
            .await
            .map_err(|e| e.to_string())?
            .is_empty(),
        "nothing is due after the run",
    )?;
    let tomorrow = d("2026-03-16");
    let due = store.due(tomorrow).await.map_err(|e| e.to_string())?;
    check(
        due.len() == 1 && due[0].last_run_date == Some(today),
        "the daily one is due tomorrow, having run today",
    )?;
    check(due[0].next_run_date == tomorrow, "next run tomorrow")?;
    let due = store
        .due(d("2026-03-20"))
        .await
        .map_err(|e| e.to_string())?;
    check(due.len() == 6, "all due on the 20th (bob's too)")?;

    // An edit of the name keeps the last run; the frequency resets it.
    let later = at("2026-03-17");
    let renamed = ScheduleInput {
        name: "renamed".into(),
        frequency: Frequency::Daily,
        start_date: today,
        ..input("x", "2026-03-15")
    };
    let s = store
        .update(&ada, &made[0].schedule_id, renamed.clone(), later)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("ada updates her own")?;
    check(s.name == "renamed", "renamed")?;
    check(s.created_at == made[0].created_at, "created_at kept")?;
    check(s.updated_at == later, "updated_at moved")?;
    check(s.last_run_date == Some(today), "last run kept")?;
    check(s.filters == ReportParams::default(), "filters replaced")?;
    let stored = store
        .get("ada", &made[0].schedule_id)
        .await
        .map_err(|e| e.to_string())?;
    check(stored.as_ref() == Some(&s), "update is stored")?;
    let weekly = ScheduleInput {
        frequency: Frequency::Weekly,
        ..renamed
    };
    let s = store
        .update(&ada, &made[0].schedule_id, weekly, later)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("ada updates her own")?;
    check(
        s.last_run_date.is_none(),
        "a new frequency resets the last run",
    )?;
    check(s.next_run_date == today, "and it runs from its start again")?;
    // A run read before the reschedule is not recorded over it.
    store
        .mark_run(&due[0], tomorrow, later)
        .await
        .map_err(|e| e.to_string())?;
    let stored = store
        .get("ada", &made[0].schedule_id)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("still there")?;
    check(stored.last_run_date.is_none(), "stale mark_run ignored")?;
    check(stored.frequency == Frequency::Weekly, "weekly kept")?;

    // Delete: gone for good, and room for another.
    check(
        store.delete(&ada, &id).await.map_err(|e| e.to_string())?,
        "ada deletes her own",
    )?;
    check(
        store
            .get("ada", &id)
            .await
            .map_err(|e| e.to_string())?
            .is_none(),
        "deleted is gone",
    )?;
    check(
        !store.delete(&ada, &id).await.map_err(|e| e.to_string())?,
        "deleting twice finds nothing",
    )?;
    check(
        store
            .update(&ada, &id, input("back", "2026-03-20"), later)
            .await
            .map_err(|e| e.to_string())?
            .is_none(),
        "a deleted schedule cannot be updated",
    )?;
    let listed = store.list("ada").await.map_err(|e| e.to_string())?;
    check(listed.len() == 4, "four left")?;
    check(
        !listed.iter().any(|s| s.schedule_id == id),
        "the deleted one is not listed",
    )?;
    let deleted = made[1].clone();
    store
        .mark_run(&deleted, today, later)
        .await
        .map_err(|e| e.to_string())?;
    check(
        store
            .get("ada", &id)
            .await
            .map_err(|e| e.to_string())?
            .is_none(),
        "marking a deleted schedule does not bring it back",
    )?;
    let fifth = store
        .create(&ada, input("fifth again", "2026-03-20"), later)
        .await
        .map_err(|e| e.to_string())?;
    let listed = store.list("ada").await.map_err(|e| e.to_string())?;
    check(
        listed.len() == 5 && listed.last() == Some(&fifth),
        "a fifth again, listed last",
    )?;
    Ok(())
}
