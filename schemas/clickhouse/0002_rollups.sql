-- Rollups the consumer writes itself, aggregated per batch (see ARCHITECTURE.md,
-- "Rollups"): each row is a fact about a key, not a count, so writing it twice
-- changes nothing. Reads are exact without FINAL when they use
-- duplicate-insensitive aggregates (uniqExact, max, any per key), and exact
-- with FINAL for anything else.

-- Days used and last accessed: one row per (team, user, product, access, UTC
-- date) with at least one reportable authorization.
CREATE TABLE IF NOT EXISTS daily_usage
(
    team_id    String,
    user_id    String,
    product    String,
    access     Enum8('seat' = 1, 'flex' = 2),
    usage_date Date
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(usage_date)
ORDER BY (team_id, user_id, product, access, usage_date);

-- Flex usage windows: one row per 24-hour window of a (user, product), with the
-- event that opened it and the token charge (the product's rate in force at
-- window_start). Tokens used in a range = the charges of windows starting in it.
CREATE TABLE IF NOT EXISTS flex_windows
(
    user_id          String,
    product          String,
    window_start     DateTime('UTC'),
    window_start_us  UInt32,                          -- microseconds within the second
    team_id          String,                          -- the opening event's team
    opening_event_id String,
    tokens_milli     UInt64
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(window_start)
ORDER BY (user_id, product, window_start, window_start_us);
