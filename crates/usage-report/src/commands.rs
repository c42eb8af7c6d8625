//! The producer of the messages the report service publishes
//! ([`usage_report::messages`]): unassign requests for upstream (commands
//! topic) and "report ready" notifications for the mail system
//! (notifications topic). Each is JSON, keyed for ordering (the user id, the
//! admin id), and sent with the idempotent producer; a request is answered
//! only once the broker has acknowledged it.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use usage_report::messages::{ReportReady, UnassignRequest};

/// How long a publish may wait for the broker's acknowledgement.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Why a message was not published.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PublishError {
    #[error("encoding the message: {0}")]
    Encode(#[from] serde_json::Error),
    #[error("the broker did not acknowledge the message: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// The producer and its two topics.
#[derive(Clone)]
pub(crate) struct Publisher {
    producer: FutureProducer,
    commands_topic: String,
    notifications_topic: String,
}

impl Publisher {
    pub(crate) fn new(
        brokers: &str,
        commands_topic: String,
        notifications_topic: String,
    ) -> Result<Publisher, rdkafka::error::KafkaError> {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("message.timeout.ms", "10000")
            .create()?;
        Ok(Publisher {
            producer,
            commands_topic,
            notifications_topic,
        })
    }

    /// The commands topic's name.
    pub(crate) fn commands_topic(&self) -> &str {
        &self.commands_topic
    }

    async fn send(&self, topic: &str, key: &str, payload: Vec<u8>) -> Result<(), PublishError> {
        self.producer
            .send(
                FutureRecord::to(topic).key(key).payload(&payload),
                DELIVERY_TIMEOUT,
            )
            .await
            .map(|_| ())
            .map_err(|(e, _)| PublishError::Kafka(e))
    }

    pub(crate) async fn unassign(&self, request: &UnassignRequest) -> Result<(), PublishError> {
        let payload = serde_json::to_vec(request)?;
        self.send(&self.commands_topic, &request.user_id, payload)
            .await
    }

    pub(crate) async fn report_ready(&self, note: &ReportReady) -> Result<(), PublishError> {
        let payload = serde_json::to_vec(note)?;
        self.send(&self.notifications_topic, &note.admin_id, payload)
            .await
    }
}
