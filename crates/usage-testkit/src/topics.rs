//! Topics of a harness: the three inbound topics and the dead-letter topic
//! of one pipeline, created and deleted on the broker.

use anyhow::{anyhow, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// The inbound topics and the dead-letter topic of one pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Topics {
    /// Authorization events.
    pub authorizations: String,
    /// Seat assignments.
    pub assignments: String,
    /// The directory (users, teams, rates).
    pub directory: String,
    /// Dead letters.
    pub dlq: String,
}

impl Topics {
    /// `<prefix>.authorizations`, `.assignments`, `.directory` and `.dlq`.
    pub fn named(prefix: &str) -> Topics {
        Topics {
            authorizations: format!("{prefix}.authorizations"),
            assignments: format!("{prefix}.assignments"),
            directory: format!("{prefix}.directory"),
            dlq: format!("{prefix}.dlq"),
        }
    }

    /// The four names.
    pub fn all(&self) -> [&str; 4] {
        [
            &self.authorizations,
            &self.assignments,
            &self.directory,
            &self.dlq,
        ]
    }

    /// The inbound topics, as the load generator publishes to them.
    pub fn inbound(&self) -> usage_loadgen::Topics {
        usage_loadgen::Topics {
            authorizations: self.authorizations.clone(),
            assignments: self.assignments.clone(),
            directory: self.directory.clone(),
        }
    }

    /// Creates the four topics, `partitions` partitions each.
    pub async fn create(&self, brokers: &str, partitions: i32) -> Result<()> {
        create_topics(brokers, &self.all(), partitions).await
    }

    /// Deletes the four topics.
    pub async fn delete(&self, brokers: &str) -> Result<()> {
        delete_topics(brokers, &self.all()).await
    }
}

/// An admin client of `brokers`.
pub fn admin(brokers: &str) -> Result<AdminClient<DefaultClientContext>> {
    ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .context("creating the Kafka admin client")
}

/// Creates `names`, `partitions` partitions each (replication 1).
pub async fn create_topics(brokers: &str, names: &[&str], partitions: i32) -> Result<()> {
    let new: Vec<NewTopic<'_>> = names
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(1)))
        .collect();
    let results = admin(brokers)?
        .create_topics(&new, &AdminOptions::new())
        .await
        .with_context(|| format!("creating topics on {brokers}"))?;
    for result in results {
        result.map_err(|(topic, code)| anyhow!("creating topic {topic}: {code}"))?;
    }
    Ok(())
}

/// Deletes `names`: an error names the first topic that could not be
/// deleted (the others are deleted all the same).
pub async fn delete_topics(brokers: &str, names: &[&str]) -> Result<()> {
    let results = admin(brokers)?
        .delete_topics(names, &AdminOptions::new())
        .await
        .with_context(|| format!("deleting topics on {brokers}"))?;
    for result in results {
        result.map_err(|(topic, code)| anyhow!("deleting topic {topic}: {code}"))?;
    }
    Ok(())
}
