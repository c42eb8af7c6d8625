//! `usage-report` over rollups built by the real `usage-ingest` from a
//! generated scenario, against the real broker and ClickHouse: every tile and
//! row equals the load generator's independent oracle, for several teams,
//! ranges and filters; identities are hashed as the teams' privacy settings
//! say; the exports hold what the JSON report says; schedules belong to
//! their admin; unassign is refused for group and default assignments.

use chrono::{Duration as Days, NaiveDate};
use reqwest::StatusCode;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use usage_core::privacy::UserHasher;
use usage_loadgen::oracle::{usage_class, DateRange};
use usage_tests::report::{
    all_rows, compare, fixture, milli, Key, Report, ReportOptions, TestAdmin, Want, HMAC_KEY,
};

/// The threshold the service is started with (not the default, so the
/// option is seen to work).
const FREQUENT_DAYS_PER_MONTH: f64 = 8.0;

/// The ranges asked for, with their months in range (the monthly
/// average's divisor).
fn ranges(today: NaiveDate) -> Vec<(String, DateRange, f64)> {
    let custom = DateRange::new(today - Days::days(59), today - Days::days(10));
    let last_30 = DateRange::new(today - Days::days(29), today);
    let this_month = today.with_day0(0).unwrap_or(today);
    let last_3 = DateRange::new(
        this_month
            .checked_sub_months(chrono::Months::new(3))
            .unwrap_or(this_month),
        this_month.pred_opt().unwrap_or(this_month),
    );
    vec![
        ("range=last_30_days".to_owned(), last_30, 1.0),
        ("range=last_3_months".to_owned(), last_3, 3.0),
        (
            format!("range=custom&from={}&to={}", custom.from, custom.to),
            custom,
            custom.calendar_months(),
        ),
    ]
}

use chrono::Datelike;

#[tokio::test(flavor = "multi_thread")]
async fn the_report_equals_the_oracle() {
    let f = fixture("report", 11).await;
    let teams = f.current_teams();
    assert!(teams.len() >= 2, "teams: {teams:?}");
    let visible: Vec<&String> = teams.iter().filter(|t| f.pii_visible(t)).collect();
    let hidden: Vec<&String> = teams.iter().filter(|t| !f.pii_visible(t)).collect();
    assert!(
        !visible.is_empty() && !hidden.is_empty(),
        "the scenario has teams with PII on and off: {teams:?}"
    );
    let root = TestAdmin {
        id: "root",
        role: "primary",
        teams: vec!["*".into()],
    };
    let one = TestAdmin {
        id: "one",
        role: "secondary",
        teams: vec![visible[0].clone()],
    };
    let nobody = TestAdmin {
        id: "nobody",
        role: "sso",
        teams: vec![],
    };
    let report = Report::start(
        f.db.name(),
        &[root.clone(), one.clone(), nobody.clone()],
        ReportOptions {
            frequent_days_per_month: Some(FREQUENT_DAYS_PER_MONTH.to_string()),
            ..ReportOptions::default()
        },
    )
    .await;
    let unhash = f.unhash();
    let now = f.published.expected.now;

    let mut occasional_seen = 0;
    for (query, range, months) in ranges(f.today()) {
        // Every team, and all teams.
        for team in teams.iter().map(Some).chain([None]) {
            let team_param = team.map_or("all", |t| t.as_str());
            let q = format!("team={team_param}&{query}");
            let got = all_rows(&report, &root, &q, &unhash).await;
            compare(&q, &f.want(team.map(|t| t.as_str()), range), &got);
            // Each row's usage class (rule 11), by the oracle's days used.
            for (key, (g, row)) in &got {
                assert_eq!(
                    row["usage_class"],
                    json!(usage_class(g.days_used, months, FREQUENT_DAYS_PER_MONTH)),
                    "{q}: {key:?}: {row}"
                );
            }

            // The tiles.
            let (status, overview) = report
                .get(Some(&root), &format!("/v1/report/overview?{q}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{overview}");
            let s = f.oracle.team_summary(team.map(|t| t.as_str()), range, now);
            let subs = &overview["subscriptions"];
            assert_eq!(
                subs["assigned_seats"],
                json!(s.seats_assigned),
                "{q}: {overview}"
            );
            assert_eq!(subs["active"], json!(s.seats_active), "{q}");
            assert_eq!(subs["not_yet_active"], json!(s.seats_not_yet_active), "{q}");
            match s.seats_inactive {
                Some(n) => assert_eq!(subs["inactive"], json!(n), "{q}"),
                None => assert!(
                    subs.get("inactive").is_none(),
                    "no inactive summary for all teams: {overview}"
                ),
            }
            assert_eq!(
                milli(&overview["flex"]["tokens_consumed"]),
                s.flex_tokens_milli,
                "{q}"
            );
            assert_eq!(overview["flex"]["users"], json!(s.flex_users), "{q}");
            assert_eq!(
                overview["flex"]["days_used"],
                json!(s.flex_days_used),
                "{q}"
            );
            // The occasional seat users tile and its tokens if moved to Flex.
            let o = f.oracle.occasional_seats(
                &f.published.expected.rows,
                team.map(|t| t.as_str()),
                range,
                months,
                FREQUENT_DAYS_PER_MONTH,
            );
            let tile = &overview["occasional"];
            assert_eq!(
                tile["below_days_per_month"],
                json!(FREQUENT_DAYS_PER_MONTH),
                "{q}: {overview}"
            );
            assert_eq!(tile["seat_users"], json!(o.seat_users), "{q}: {tile}");
            assert_eq!(tile["seats"], json!(o.seats), "{q}: {tile}");
            assert_eq!(
                milli(&tile["flex_tokens_if_moved"]),
                o.flex_tokens_if_moved_milli,
                "{q}: {tile}"
            );
            occasional_seen += o.seats;
            assert_eq!(overview["range"]["from"], json!(range.from.to_string()));
            assert_eq!(overview["range"]["to"], json!(range.to.to_string()));

            // The daily chart adds up to the rows and the tiles.
            let (status, daily) = report
                .get(Some(&root), &format!("/v1/report/daily?{q}"))
                .await;
            assert_eq!(status, StatusCode::OK, "{daily}");
            let points = daily["days"].as_array().cloned().unwrap_or_default();
            assert_eq!(points.len() as i64, (range.to - range.from).num_days() + 1);
            let days_used: u64 = points
                .iter()
                .map(|p| p["days_used"].as_u64().unwrap_or(0))
                .sum();
            let want_days: u64 = f
                .want(team.map(|t| t.as_str()), range)
                .values()
                .map(|w| w.days_used)
                .sum();
            assert_eq!(days_used, want_days, "{q}: daily days used");
            let tokens: u64 = points.iter().map(|p| milli(&p["tokens"])).sum();
            assert_eq!(tokens, s.flex_tokens_milli, "{q}: daily tokens");

            // Flex users are never inactive; not-yet-active seats are neither
            // active nor inactive.
            for ((_, _, _, access), (g, _)) in &got {
                assert!(!(access == "flex" && g.status == "inactive"), "{q}");
            }
            if let Some(inactive) = subs["inactive"].as_u64() {
                assert_eq!(
                    subs["active"].as_u64().unwrap_or(0)
                        + inactive
                        + subs["not_yet_active"].as_u64().unwrap_or(0),
                    subs["assigned_seats"].as_u64().unwrap_or(u64::MAX),
                    "{q}: every seat assigned now is active, inactive or not yet active"
                );
            }
        }
    }

    assert!(
        occasional_seen > 0,
        "the scenario has occasional seats to weigh"
    );

    // Privacy: ids and profiles for a team with PII on, keyed hashes for a
    // team with it off, and hashes for everyone with all teams selected.
    let hasher = UserHasher::new(HMAC_KEY.as_bytes()).expect("key");
    for team in &teams {
        let (_, body) = report
            .get(
                Some(&root),
                &format!("/v1/report/users?team={team}&page_size=1000"),
            )
            .await;
        let rows = body["rows"].as_array().cloned().unwrap_or_default();
        assert!(!rows.is_empty(), "team {team} has rows");
        for row in rows {
            let key = row["user_key"].as_str().unwrap_or_default();
            if f.pii_visible(team) {
                assert!(!unhash.contains_key(key), "{team}: ids shown: {row}");
                assert!(row["name"].is_string() && row["email"].is_string(), "{row}");
            } else {
                assert!(unhash.contains_key(key), "{team}: hashed: {row}");
                assert_eq!(hasher.hash(&unhash[key]), key);
                // "Hashed data values are shown": the hash in name and email.
                assert!(
                    row["name"] == json!(key)
                        && row["email"] == json!(key)
                        && row["avatar_url"].is_null(),
                    "{row}"
                );
            }
        }
    }
    let (_, body) = report
        .get(Some(&root), "/v1/report/users?team=all&page_size=1000")
        .await;
    for row in body["rows"].as_array().cloned().unwrap_or_default() {
        let key = row["user_key"].as_str().unwrap_or_default();
        assert!(
            unhash.contains_key(key) && row["name"] == json!(key) && row["email"] == json!(key),
            "all teams with a PII-off team: everyone hashed: {row}"
        );
    }
    // An admin of one team sees it with PII (it is on), even with "all".
    let (_, body) = report
        .get(Some(&one), "/v1/report/users?team=all&page_size=1000")
        .await;
    let rows = body["rows"].as_array().cloned().unwrap_or_default();
    assert!(!rows.is_empty());
    for row in &rows {
        assert_eq!(row["team_id"], json!(visible[0]), "only the admin's team");
        assert!(!unhash.contains_key(row["user_key"].as_str().unwrap_or_default()));
    }

    // Filters, sorting and pages.
    let team = visible[0];
    let base = format!("team={team}&range=last_3_months");
    let full = all_rows(&report, &root, &base, &unhash).await;
    for status in [
        "active",
        "inactive",
        "not_yet_active",
        "flex_unused",
        "unassigned",
    ] {
        let got = all_rows(&report, &root, &format!("{base}&status={status}"), &unhash).await;
        let want: BTreeMap<Key, (Want, Value)> = full
            .iter()
            .filter(|(_, (w, _))| w.status == status)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(
            got.keys().collect::<Vec<_>>(),
            want.keys().collect::<Vec<_>>(),
            "status={status}"
        );
    }
    // The usage class filter keeps exactly the rows of that class; the tile
    // follows it.
    let mut classes = 0;
    for class in ["frequent", "occasional", "unused"] {
        let q = format!("{base}&usage_class={class}");
        let got = all_rows(&report, &root, &q, &unhash).await;
        let want: Vec<&Key> = full
            .iter()
            .filter(|(_, (_, v))| v["usage_class"] == json!(class))
            .map(|(k, _)| k)
            .collect();
        assert_eq!(got.keys().collect::<Vec<_>>(), want, "{q}");
        classes += usize::from(!want.is_empty());
        let (_, overview) = report
            .get(Some(&root), &format!("/v1/report/overview?{q}"))
            .await;
        let (_, all) = report
            .get(Some(&root), &format!("/v1/report/overview?{base}"))
            .await;
        let seats = &overview["occasional"]["seats"];
        if class == "occasional" {
            assert_eq!(overview["occasional"], all["occasional"], "{q}");
        } else {
            assert_eq!(seats, &json!(0), "{q}: {overview}");
        }
    }
    assert!(classes >= 2, "the scenario has rows of several classes");
    let (_, by_class) = report
        .get(
            Some(&root),
            &format!("/v1/report/users?{base}&sort=usage_class:desc&page_size=1000"),
        )
        .await;
    let rank = |v: &Value| match v["usage_class"].as_str() {
        Some("frequent") => 2,
        Some("occasional") => 1,
        _ => 0,
    };
    let ranks: Vec<i32> = by_class["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(rank)
        .collect();
    assert!(
        !ranks.is_empty() && ranks.windows(2).all(|w| w[0] >= w[1]),
        "sorted by usage class, most used first"
    );
    let got = all_rows(&report, &root, &format!("{base}&access=flex"), &unhash).await;
    assert!(got.keys().all(|k| k.3 == "flex"));
    assert_eq!(got.len(), full.keys().filter(|k| k.3 == "flex").count());
    let product = full.keys().next().map(|k| k.2.clone()).unwrap_or_default();
    let got = all_rows(
        &report,
        &root,
        &format!("{base}&product={product}"),
        &unhash,
    )
    .await;
    assert_eq!(got.len(), full.keys().filter(|k| k.2 == product).count());
    let user = full.keys().next().map(|k| k.1.clone()).unwrap_or_default();
    let got = all_rows(
        &report,
        &root,
        &format!("{base}&q={}", user.to_uppercase()),
        &unhash,
    )
    .await;
    assert!(
        !got.is_empty() && got.keys().all(|k| k.1.contains(&user)),
        "search by id"
    );
    let group_row = full
        .values()
        .find(|(_, v)| v["groups"].as_array().is_some_and(|g| !g.is_empty()));
    if let Some((_, row)) = group_row {
        let group = row["groups"][0].as_str().unwrap_or_default().to_owned();
        let got = all_rows(&report, &root, &format!("{base}&group={group}"), &unhash).await;
        assert!(!got.is_empty());
        assert!(got.values().all(|(_, v)| v["groups"]
            .as_array()
            .is_some_and(|g| g.contains(&json!(group)))));
    }
    let (_, sorted) = report
        .get(
            Some(&root),
            &format!("/v1/report/users?{base}&sort=days_used:desc&page_size=1000"),
        )
        .await;
    let days: Vec<u64> = sorted["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| r["days_used"].as_u64().unwrap_or(0))
        .collect();
    assert!(
        days.windows(2).all(|w| w[0] >= w[1]),
        "sorted by days used, descending"
    );
    let (_, page2) = report
        .get(
            Some(&root),
            &format!("/v1/report/users?{base}&sort=days_used:desc&page=2&page_size=5"),
        )
        .await;
    assert_eq!(
        page2["rows"].as_array().map(Vec::len),
        Some(5.min(days.len().saturating_sub(5)))
    );
    assert_eq!(
        page2["rows"][0], sorted["rows"][5],
        "page 2 continues page 1"
    );
    assert_eq!(page2["page"], json!(2));
    assert_eq!(page2["total"], json!(days.len()));

    let (_, by_name) = report
        .get(
            Some(&root),
            &format!("/v1/report/users?{base}&sort=name:asc&page_size=1000"),
        )
        .await;
    let names: Vec<String> = by_name["rows"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|r| r["name"].as_str().unwrap_or_default().to_lowercase())
        .collect();
    assert!(
        !names.is_empty() && names.windows(2).all(|w| w[0] <= w[1]),
        "sorted by name"
    );
    // An admin of no team sees an empty report, not an error.
    let (status, body) = report.get(Some(&nobody), "/v1/report/users?team=all").await;
    assert_eq!(
        (status, body["total"].clone()),
        (StatusCode::OK, json!(0)),
        "{body}"
    );
    let (status, body) = report.get(Some(&nobody), "/v1/report/overview").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["subscriptions"]["assigned_seats"], json!(0));

    // Every documented route is served, and /v1 needs a token.
    for (method, path) in usage_report::openapi::ROUTES {
        let path = path
            .replace("{export_id}", "00000000-0000-4000-8000-000000000000")
            .replace("{schedule_id}", "00000000-0000-4000-8000-000000000000");
        let response = reqwest::Client::new()
            .request(method.parse().expect("a method"), report.url(&path))
            .send()
            .await
            .expect("answers");
        if path.starts_with("/v1/") {
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{method} {path}"
            );
        } else {
            assert_eq!(response.status(), StatusCode::OK, "{method} {path}");
        }
    }
    let (_, doc) = report.get(None, "/openapi.json").await;
    assert_eq!(doc["openapi"], json!("3.1.0"));

    // Access and bad input.
    let (status, body) = report.get(None, "/v1/report/overview").await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::UNAUTHORIZED, json!("unauthorized"))
    );
    let other = teams
        .iter()
        .find(|t| *t != visible[0])
        .cloned()
        .unwrap_or_default();
    let (status, body) = report
        .get(Some(&one), &format!("/v1/report/overview?team={other}"))
        .await;
    assert_eq!(
        (status, body["error"].clone()),
        (StatusCode::FORBIDDEN, json!("forbidden"))
    );
    for (bad, code) in [
        ("range=last_week", "invalid_parameter"),
        ("range=custom&from=2026-02-01", "invalid_range"),
        ("range=last_3_months&to=2026-02-01", "invalid_range"),
        ("sort=salary:asc", "invalid_parameter"),
        ("page_size=0", "invalid_parameter"),
        ("access=trial", "invalid_parameter"),
        ("usage_class=rare", "invalid_parameter"),
        ("usage_class=", "invalid_parameter"),
    ] {
        let (status, body) = report
            .get(Some(&root), &format!("/v1/report/users?{bad}"))
            .await;
        assert_eq!(
            (status, body["error"].clone()),
            (StatusCode::BAD_REQUEST, json!(code)),
            "{bad}: {body}"
        );
        assert!(body["message"].is_string());
    }
    let log = report.log_text();
    assert!(!log.contains(&root.token()), "no token in the log");
}
