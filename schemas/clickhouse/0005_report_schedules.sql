-- Scheduled report exports (DESIGN.md rule 9): at most 5 per admin, seen only
-- by the admin who made them. The usage report service writes one row per
-- change of a schedule (create, edit, run, delete), never rewrites one, and
-- reads the latest version per schedule_id (argMax(col, version) grouped by
-- schedule_id, owner_admin_id; no FINAL): a row with deleted = 1 is a
-- tombstone, the schedule is gone. ReplacingMergeTree(version) only saves
-- space on merge; reads are exact without it.
CREATE TABLE IF NOT EXISTS report_schedules
(
    schedule_id    String,                                        -- UUID v4
    owner_admin_id String,                                        -- the admin who made it
    name           String,
    start_date     Date,                                          -- first run (UTC date)
    frequency      Enum8('daily' = 1, 'weekly' = 2, 'monthly' = 3),
    kind           Enum8('report' = 1, 'seat_usage' = 2, 'token_usage' = 3),
    format         Enum8('csv' = 1, 'xlsx' = 2),
    filters        String,                                        -- the report parameters, as JSON
    created_at     DateTime('UTC'),
    updated_at     DateTime('UTC'),
    last_run_date  Date,                                          -- 1970-01-01 = never run
    deleted        UInt8,                                         -- 1 = tombstone
    version        UInt64                                         -- µs since epoch, increasing
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (owner_admin_id, schedule_id);
