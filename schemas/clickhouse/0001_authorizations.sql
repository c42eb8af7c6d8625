-- The facts: one row per reportable (online) license authorization, stamped at
-- ingest with its team, usage window and token charge, never rewritten.
--
-- Idempotence: a replayed or re-published event has the same event_id and the
-- same stamps, so it lands in the same partition with the same sorting key;
-- ReplacingMergeTree collapses the copies on merge. Exact reads either use
-- FINAL or aggregate with duplicate-insensitive functions (uniqExact, max,
-- any per event_id) — see ARCHITECTURE.md.
CREATE TABLE IF NOT EXISTS authorizations
(
    event_id         String,
    occurred_at      DateTime('UTC'),
    occurred_us      UInt32,                         -- microseconds within the second
    usage_date       Date,                           -- UTC date of occurred_at
    team_id          String,                         -- stamped once at ingest
    team_source      Enum8('event' = 1, 'assignment' = 2),
    user_id          String,
    product          String,
    product_version  String,
    access           Enum8('seat' = 1, 'flex' = 2),
    machine_id       String,
    window_start     DateTime('UTC'),                -- Flex usage window (1970-01-01 for seat)
    tokens_milli     UInt64,                         -- charge in thousandths of a token (0 unless it opened a window)
    source_partition UInt16,
    source_offset    UInt64,
    ingested_at      DateTime('UTC')
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(usage_date)
ORDER BY (team_id, user_id, product, access, usage_date, event_id);
