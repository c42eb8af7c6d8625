-- Rollups shaped for the report's reads (see ARCHITECTURE.md, "Rollups"):
-- days used in a range, last accessed ever and tokens of the windows starting
-- in a range, from state that does not grow with the events (one row per
-- report line, or per line and month) instead of the day-level rows.
--
-- Each is filled by a materialized view from what the ingest already writes
-- (daily_usage, flex_windows), so ClickHouse maintains it on every insert,
-- retried ones included, and backfilled here from the rows already stored.
-- The view is created before its backfill: rows inserted in between reach the
-- rollup twice, which changes nothing, because every aggregate kept is
-- idempotent (an OR of day bits, a max, a set of windows). For the same
-- reason this file may run twice.

-- Days used: per (team, user, product, access, UTC month) the days of the
-- month with usage, as a bit mask (bit d-1 for day d). Days used in a range =
-- the bits of the range's days, OR-ed over copies and merged teams, counted.
CREATE TABLE IF NOT EXISTS usage_months
(
    team_id String,
    user_id String,
    product String,
    access  Enum8('seat' = 1, 'flex' = 2),
    month   Date,                                     -- the first day of the month
    days    AggregateFunction(groupBitOr, UInt32)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(month)
ORDER BY (team_id, user_id, product, access, month);

CREATE MATERIALIZED VIEW IF NOT EXISTS usage_months_mv TO usage_months AS
SELECT
    team_id,
    user_id,
    product,
    access,
    toStartOfMonth(usage_date) AS month,
    groupBitOrState(toUInt32(bitShiftLeft(toUInt32(1), toDayOfMonth(usage_date) - 1))) AS days
FROM daily_usage
GROUP BY team_id, user_id, product, access, month;

INSERT INTO usage_months (team_id, user_id, product, access, month, days)
SELECT
    team_id,
    user_id,
    product,
    access,
    toStartOfMonth(usage_date) AS month,
    groupBitOrState(toUInt32(bitShiftLeft(toUInt32(1), toDayOfMonth(usage_date) - 1))) AS days
FROM daily_usage
GROUP BY team_id, user_id, product, access, month;

-- Last accessed: one row per (team, user, product, access) once merged, the
-- last UTC date with usage. Read with max(last_date) per key (or FINAL).
CREATE TABLE IF NOT EXISTS last_access
(
    team_id   String,
    user_id   String,
    product   String,
    access    Enum8('seat' = 1, 'flex' = 2),
    last_date Date
)
ENGINE = ReplacingMergeTree(last_date)
ORDER BY (team_id, user_id, product, access);

CREATE MATERIALIZED VIEW IF NOT EXISTS last_access_mv TO last_access AS
SELECT team_id, user_id, product, access, max(usage_date) AS last_date
FROM daily_usage
GROUP BY team_id, user_id, product, access;

INSERT INTO last_access (team_id, user_id, product, access, last_date)
SELECT team_id, user_id, product, access, max(usage_date) AS last_date
FROM daily_usage
GROUP BY team_id, user_id, product, access;

-- Tokens: per (opening event's team, user, product, UTC month of the window
-- start) the set of the Flex windows starting in the month, each as (day of
-- the month, window_start in seconds, its microseconds, tokens_milli). A set:
-- a window written twice is one element. Tokens in a range = the sum over
-- the windows whose day is in it.
CREATE TABLE IF NOT EXISTS token_months
(
    team_id String,
    user_id String,
    product String,
    month   Date,                                     -- the first day of the month
    windows AggregateFunction(groupUniqArray, Tuple(UInt8, UInt32, UInt32, UInt64))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(month)
ORDER BY (team_id, user_id, product, month);

CREATE MATERIALIZED VIEW IF NOT EXISTS token_months_mv TO token_months AS
SELECT
    team_id,
    user_id,
    product,
    toStartOfMonth(toDate(window_start)) AS month,
    groupUniqArrayState(tuple(
        toUInt8(toDayOfMonth(window_start)),
        toUInt32(window_start),
        toUInt32(window_start_us),
        toUInt64(tokens_milli)
    )) AS windows
FROM flex_windows
GROUP BY team_id, user_id, product, month;

INSERT INTO token_months (team_id, user_id, product, month, windows)
SELECT
    team_id,
    user_id,
    product,
    toStartOfMonth(toDate(window_start)) AS month,
    groupUniqArrayState(tuple(
        toUInt8(toDayOfMonth(window_start)),
        toUInt32(window_start),
        toUInt32(window_start_us),
        toUInt64(tokens_milli)
    )) AS windows
FROM flex_windows
GROUP BY team_id, user_id, product, month;
