-- Views for analysts and dashboards: the rollups with copies collapsed, in
-- the words of the usage report. Each reads one rollup table; none is
-- materialized (no write cost). Ranges are WHERE clauses on the date columns.

-- One row per (team, user, product, access, UTC day) with at least one
-- reportable authorization: days used = count() over a date range.
CREATE VIEW IF NOT EXISTS usage_days AS
SELECT DISTINCT team_id, user_id, product, access, usage_date
FROM daily_usage;

-- One row per Flex usage window: its start, the opening event's team and the
-- tokens charged (the daily rate in force at the start).
CREATE VIEW IF NOT EXISTS token_charges AS
SELECT
    user_id,
    product,
    window_start,
    toDate(window_start) AS window_date,
    team_id,
    opening_event_id,
    tokens_milli,
    tokens_milli / 1000 AS tokens
FROM flex_windows FINAL;

-- The assignments in force now: one row per (team, user, product, access).
CREATE VIEW IF NOT EXISTS current_assignments AS
SELECT team_id, user_id, product, access, assigned_date, via, group_id
FROM assignment_state FINAL
WHERE assigned = 1;

-- Every reportable authorization once (copies collapsed), with its stamps.
CREATE VIEW IF NOT EXISTS authorization_facts AS
SELECT
    event_id, occurred_at, usage_date, team_id, team_source, user_id, product,
    product_version, access, machine_id, window_start, tokens_milli
FROM authorizations FINAL;
