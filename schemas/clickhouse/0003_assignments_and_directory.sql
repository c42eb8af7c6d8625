-- Assignment and directory events, kept as they arrive (one row per event_id),
-- and the latest-wins views of them the report reads. The consumer loads them
-- on start to resolve teams and Flex rates, so a restart or a rebalance gives
-- the same stamps.

CREATE TABLE IF NOT EXISTS assignment_events
(
    event_id    String,
    occurred_at DateTime('UTC'),
    occurred_us UInt32,
    action      Enum8('assign' = 1, 'unassign' = 2),
    team_id     String,
    user_id     String,
    product     String,
    access      Enum8('seat' = 1, 'flex' = 2),
    via         Enum8('direct' = 1, 'group' = 2, 'default' = 3),
    group_id    String,
    ingested_at DateTime('UTC')                       -- lets every instance follow the table
)
ENGINE = ReplacingMergeTree
ORDER BY (user_id, product, team_id, access, occurred_at, occurred_us, event_id);

-- Current assignment per (team, user, product, access), recomputed by the
-- consumer from the whole history whenever an event for the key arrives;
-- `version` is the occurred_at (µs since epoch) of the newest event it saw.
CREATE TABLE IF NOT EXISTS assignment_state
(
    team_id       String,
    user_id       String,
    product       String,
    access        Enum8('seat' = 1, 'flex' = 2),
    assigned      UInt8,
    assigned_date Date,                               -- start of the current continuous assignment
    via           Enum8('direct' = 1, 'group' = 2, 'default' = 3),
    group_id      String,
    version       UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (team_id, user_id, product, access);

CREATE TABLE IF NOT EXISTS user_profiles
(
    user_id    String,
    name       String,
    email      String,
    avatar_url String,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY user_id;

CREATE TABLE IF NOT EXISTS teams
(
    team_id     String,
    name        String,
    pii_visible UInt8,
    version     UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY team_id;

CREATE TABLE IF NOT EXISTS group_memberships
(
    team_id    String,
    group_id   String,
    group_name String,
    user_id    String,
    member     UInt8,
    version    UInt64
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (team_id, user_id, group_id);

CREATE TABLE IF NOT EXISTS team_merges
(
    event_id     String,
    occurred_at  DateTime('UTC'),
    from_team_id String,
    into_team_id String
)
ENGINE = ReplacingMergeTree
ORDER BY (from_team_id, into_team_id, event_id);

CREATE TABLE IF NOT EXISTS product_rates
(
    product             String,
    name                String,
    flex_tokens_milli   UInt64,
    effective_from      DateTime('UTC'),
    effective_from_us   UInt32,
    event_id            String,
    version             UInt64                        -- occurred_at (µs): the later publication wins
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (product, effective_from, effective_from_us);
