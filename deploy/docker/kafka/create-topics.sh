#!/usr/bin/env bash
# Creates the pipeline's topics on the compose Kafka broker (idempotent: run by
# the one-shot `kafka-init` service on every `docker compose up`).
#
# Environment:
#   BOOTSTRAP_SERVERS broker to talk to (default kafka:19092)
#   USAGE_PARTITIONS  partitions of the three inbound topics (default 4)
#   USAGE_REPLICATION_FACTOR  copies of each partition (default 1; 3 on the
#                     three-broker Kafka of the `cluster` profile)
#
# Existing topics are left as they are (`--if-not-exists`): to change the
# partition count of an existing topic use `kafka-topics.sh --alter`, or start
# from empty volumes (`docker compose down -v`).
set -euo pipefail

bootstrap="${BOOTSTRAP_SERVERS:-kafka:19092}"
partitions="${USAGE_PARTITIONS:-4}"
replication="${USAGE_REPLICATION_FACTOR:-1}"
topics_cli="${TOPICS_CLI:-/opt/kafka/bin/kafka-topics.sh}"

case "$partitions" in
    '' | *[!0-9]* | 0)
        echo "USAGE_PARTITIONS must be a positive integer, got '$partitions'" >&2
        exit 2
        ;;
esac

# create TOPIC PARTITIONS [extra kafka-topics.sh arguments...]
create() {
    local topic="$1" count="$2"
    shift 2
    echo "topic ${topic}: ${count} partition(s) $*"
    "$topics_cli" --bootstrap-server "$bootstrap" --create --if-not-exists \
        --topic "$topic" --partitions "$count" --replication-factor "$replication" "$@"
}

# Inbound contract (keyed by user_id / team_id): consumer parallelism.
create usage.authorizations "$partitions"
create usage.assignments "$partitions"
create usage.directory "$partitions"

# Dead letters must stay until replayed: no time-based deletion.
create usage.dlq 1 --config retention.ms=-1

# Requests to upstream (unassign) and notifications (scheduled exports).
create usage.commands 1
create usage.notifications 1

# For the log only.
"$topics_cli" --bootstrap-server "$bootstrap" --describe --topic 'usage\..*' || true
