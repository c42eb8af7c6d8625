//! What the pipeline consumes: the three inbound topics by role, their
//! configured names, and one consumed message.

/// The inbound topics, by role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Topic {
    Authorizations,
    Assignments,
    Directory,
}

/// The configured names of the inbound topics.
#[derive(Debug, Clone)]
pub(crate) struct TopicNames {
    pub(crate) authorizations: String,
    pub(crate) assignments: String,
    pub(crate) directory: String,
}

impl TopicNames {
    /// Short names for the unit tests' messages.
    #[cfg(test)]
    pub(crate) fn for_tests() -> TopicNames {
        TopicNames {
            authorizations: "auth".into(),
            assignments: "asg".into(),
            directory: "dir".into(),
        }
    }

    pub(crate) fn name(&self, topic: Topic) -> &str {
        match topic {
            Topic::Authorizations => &self.authorizations,
            Topic::Assignments => &self.assignments,
            Topic::Directory => &self.directory,
        }
    }

    pub(crate) fn role(&self, name: &str) -> Option<Topic> {
        [Topic::Authorizations, Topic::Assignments, Topic::Directory]
            .into_iter()
            .find(|t| self.name(*t) == name)
    }
}

/// One consumed message, owned.
#[derive(Debug, Clone)]
pub(crate) struct RawMessage {
    pub(crate) topic: Topic,
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) key: Option<Vec<u8>>,
    pub(crate) payload: Vec<u8>,
}
