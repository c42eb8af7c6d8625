//! Backpressure: the one owner of every pause and resume of the consumer's
//! partitions, and of the paused-partitions gauge. The consumer is polled
//! throughout (so the group keeps this member); what stops the flow is that
//! partitions are paused, for one of four reasons:
//!
//! | reason | partitions | from … until … |
//! | --- | --- | --- |
//! | writes | every one | the next batch is full while as many batches as allowed are written … the oldest write is through |
//! | reads | every one | a batch's read of enrichment state failed (ClickHouse down) … the batch's reads succeed |
//! | catch-up | authorizations | partitions were assigned … each reference partition is read to its end |
//! | reference | authorizations | a full batch waits on reference data the broker gave … a batch takes the usage |
//!
//! A partition is paused while any reason holds for it, and resumed once
//! none does; but only once it is known to be fetching, that is once a
//! message of it has come since it was assigned. librdkafka starts a
//! partition's fetcher on its own thread some time after the assignment,
//! and a pause or resume issued meanwhile can outdate that start: the
//! partition is then never fetched, with no error (librdkafka issues #2190
//! and #5591; seen here as one authorizations partition silent for good
//! after a start-up's catch-up, once in a day of test runs). Until its first message a partition is not
//! paused: what it delivers meanwhile is at most what librdkafka
//! prefetches, which the memory budget counts anyway, and pausing is never
//! what keeps the stamps right (the reference gate is).
//!
//! Revoked partitions are resumed by the rebalance callback before
//! librdkafka unassigns them (on the same thread, so nothing can interleave),
//! and forgotten here: a partition assigned again starts unpaused.

use crate::kafka::IngestConsumer;
use crate::message::{Topic, TopicNames};
use crate::metrics::Metrics;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::TopicPartitionList;
use std::collections::HashSet;

/// One partition of an inbound topic.
pub(crate) type Partition = (Topic, i32);

/// What backpressure acts on: the consumer's assigned partitions.
pub(crate) trait Partitions {
    /// The partitions of the inbound topics the consumer owns now.
    fn assigned(&self) -> Result<Vec<Partition>, KafkaError>;
    fn pause(&self, partitions: &[Partition]) -> Result<(), KafkaError>;
    fn resume(&self, partitions: &[Partition]) -> Result<(), KafkaError>;
}

/// The reasons in force, and the partitions paused for them.
pub(crate) struct Backpressure {
    /// Every partition: the batches in flight are as many as allowed and the
    /// next one is full.
    writes: bool,
    /// Every partition: a batch's reads of enrichment state wait for ClickHouse.
    reads: bool,
    /// Authorizations: reference data is read to its end after an assignment.
    catch_up: bool,
    /// Authorizations: a full batch waits on reference data.
    reference: bool,
    paused: HashSet<Partition>,
    /// Assigned partitions no message has come from since: not paused (see
    /// the module's documentation). Empty in steady state, so a message
    /// costs one check.
    unstarted: Vec<Partition>,
    metrics: Metrics,
}

impl Backpressure {
    pub(crate) fn new(metrics: Metrics) -> Backpressure {
        Backpressure {
            writes: false,
            reads: false,
            catch_up: false,
            reference: false,
            paused: HashSet::new(),
            unstarted: Vec::new(),
            metrics,
        }
    }

    /// Partitions were assigned: none is paused before its first message.
    pub(crate) fn assigned(&mut self, partitions: &[Partition]) {
        for partition in partitions {
            if !self.unstarted.contains(partition) {
                self.unstarted.push(*partition);
            }
        }
    }

    /// Partitions were revoked (and resumed by the rebalance callback):
    /// nothing of them is remembered.
    pub(crate) fn revoked(&mut self, partitions: &[Partition]) {
        self.unstarted.retain(|p| !partitions.contains(p));
        for partition in partitions {
            self.paused.remove(partition);
        }
    }

    /// A message of `partition` came: it is fetching, so it may be paused
    /// now if a reason holds for it.
    pub(crate) fn received(
        &mut self,
        on: &impl Partitions,
        partition: Partition,
    ) -> Result<(), KafkaError> {
        if self.unstarted.is_empty() {
            return Ok(());
        }
        let before = self.unstarted.len();
        self.unstarted.retain(|p| *p != partition);
        if self.unstarted.len() != before {
            self.apply(on)?;
        }
        Ok(())
    }

    /// Whether every partition is paused because writes lag (the loop then
    /// takes no message).
    pub(crate) fn writes_lag(&self) -> bool {
        self.writes
    }

    /// The next batch is full and no write may start: pauses everything.
    pub(crate) fn writes_full(&mut self, on: &impl Partitions) -> Result<(), KafkaError> {
        if self.writes {
            return Ok(());
        }
        self.writes = true;
        let (paused, _) = self.apply(on)?;
        tracing::info!(
            partitions = paused,
            "paused: the previous batch is still being written"
        );
        Ok(())
    }

    /// A write is through: what writes held flows again.
    pub(crate) fn write_done(&mut self, on: &impl Partitions) -> Result<(), KafkaError> {
        if !self.writes {
            return Ok(());
        }
        self.writes = false;
        let (_, resumed) = self.apply(on)?;
        tracing::info!(partitions = resumed, "resumed");
        Ok(())
    }

    /// A read of enrichment state failed and waits to be retried: pauses everything.
    pub(crate) fn reads_failing(&mut self, on: &impl Partitions) -> Result<(), KafkaError> {
        self.reads = true;
        let (paused, _) = self.apply(on)?;
        tracing::info!(
            partitions = paused,
            "paused: enrichment state cannot be read"
        );
        Ok(())
    }

    /// The reads succeed again (`received`: messages polled meanwhile).
    pub(crate) fn reads_done(
        &mut self,
        on: &impl Partitions,
        received: usize,
    ) -> Result<(), KafkaError> {
        self.reads = false;
        self.apply(on)?;
        tracing::info!(
            received,
            "reads of enrichment state succeed again: partitions resumed"
        );
        Ok(())
    }

    /// A catch-up of reference data started (`true`) or ended.
    pub(crate) fn catch_up(
        &mut self,
        on: &impl Partitions,
        active: bool,
    ) -> Result<(), KafkaError> {
        self.catch_up = active;
        self.apply(on)?;
        Ok(())
    }

    /// A full batch waits on reference data: usage stops coming (what
    /// librdkafka already fetched still does) so the reference messages
    /// behind it get through. Not while writes lag (everything is paused).
    pub(crate) fn hold_usage(&mut self, on: &impl Partitions) -> Result<(), KafkaError> {
        if self.reference || self.writes {
            return Ok(());
        }
        self.reference = true;
        let (paused, _) = self.apply(on)?;
        tracing::debug!(
            partitions = paused,
            "usage paused: the batch waits on reference data"
        );
        Ok(())
    }

    /// A batch took the usage: what the reference wait held flows again.
    pub(crate) fn release_usage(&mut self, on: &impl Partitions) -> Result<(), KafkaError> {
        if !self.reference {
            return Ok(());
        }
        self.reference = false;
        self.apply(on)?;
        Ok(())
    }

    /// Pauses the assigned partitions a reason holds for and resumes those
    /// none holds for any more; sets the gauge. How many were paused and
    /// resumed now.
    fn apply(&mut self, on: &impl Partitions) -> Result<(usize, usize), KafkaError> {
        let assigned = on.assigned()?;
        let (mut pause, mut resume) = (Vec::new(), Vec::new());
        for partition in &assigned {
            let held = (self.writes
                || self.reads
                || (partition.0 == Topic::Authorizations && (self.catch_up || self.reference)))
                && !self.unstarted.contains(partition);
            match (held, self.paused.contains(partition)) {
                (true, false) => pause.push(*partition),
                (false, true) => resume.push(*partition),
                _ => {}
            }
        }
        if !pause.is_empty() {
            on.pause(&pause)?;
            self.paused.extend(pause.iter().copied());
        }
        if !resume.is_empty() {
            on.resume(&resume)?;
            for partition in &resume {
                self.paused.remove(partition);
            }
        }
        let paused = assigned.iter().filter(|p| self.paused.contains(p)).count();
        self.metrics.set_paused(paused);
        Ok((pause.len(), resume.len()))
    }
}

/// The consumer's partitions of the inbound topics.
pub(crate) struct ConsumerPartitions<'a> {
    pub(crate) consumer: &'a IngestConsumer,
    pub(crate) topics: &'a TopicNames,
}

impl ConsumerPartitions<'_> {
    fn list(&self, partitions: &[Partition]) -> TopicPartitionList {
        let mut list = TopicPartitionList::new();
        for (topic, partition) in partitions {
            list.add_partition(self.topics.name(*topic), *partition);
        }
        list
    }
}

impl Partitions for ConsumerPartitions<'_> {
    fn assigned(&self) -> Result<Vec<Partition>, KafkaError> {
        let assignment = self.consumer.assignment()?;
        Ok(assignment
            .elements()
            .iter()
            .filter_map(|e| self.topics.role(e.topic()).map(|t| (t, e.partition())))
            .collect())
    }

    fn pause(&self, partitions: &[Partition]) -> Result<(), KafkaError> {
        self.consumer.pause(&self.list(partitions))
    }

    fn resume(&self, partitions: &[Partition]) -> Result<(), KafkaError> {
        self.consumer.resume(&self.list(partitions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::RefCell;
    use Topic::{Assignments as Asg, Authorizations as Auth, Directory as Dir};

    /// A consumer that records what is paused.
    #[derive(Default)]
    struct Fake {
        assigned: RefCell<Vec<Partition>>,
        paused: RefCell<HashSet<Partition>>,
        calls: RefCell<Vec<String>>,
    }

    impl Fake {
        fn with(assigned: &[Partition]) -> Fake {
            let fake = Fake::default();
            fake.assigned.replace(assigned.to_vec());
            fake
        }

        fn paused(&self) -> Vec<Partition> {
            let mut paused: Vec<Partition> = self.paused.borrow().iter().copied().collect();
            paused.sort();
            paused
        }
    }

    impl Partitions for Fake {
        fn assigned(&self) -> Result<Vec<Partition>, KafkaError> {
            Ok(self.assigned.borrow().clone())
        }
        fn pause(&self, partitions: &[Partition]) -> Result<(), KafkaError> {
            self.calls
                .borrow_mut()
                .push(format!("pause {partitions:?}"));
            self.paused.borrow_mut().extend(partitions.iter().copied());
            Ok(())
        }
        fn resume(&self, partitions: &[Partition]) -> Result<(), KafkaError> {
            self.calls
                .borrow_mut()
                .push(format!("resume {partitions:?}"));
            for p in partitions {
                // Resuming a partition that is not paused would be a bug here.
                assert!(self.paused.borrow_mut().remove(p), "{p:?} was not paused");
            }
            Ok(())
        }
    }

    fn gauge(metrics: &Metrics) -> String {
        metrics
            .render()
            .lines()
            .find(|l| l.starts_with("usage_ingest_paused_partitions "))
            .unwrap_or_default()
            .to_owned()
    }

    const ALL: [Partition; 3] = [(Auth, 0), (Asg, 0), (Dir, 0)];

    fn setup() -> (Fake, Backpressure, Metrics) {
        let metrics = Metrics::new().expect("metrics");
        (
            Fake::with(&ALL),
            Backpressure::new(metrics.clone()),
            metrics,
        )
    }

    #[test]
    fn lagging_writes_pause_everything_until_one_is_through() {
        let (consumer, mut bp, metrics) = setup();
        bp.writes_full(&consumer).expect("paused");
        assert!(bp.writes_lag());
        assert_eq!(consumer.paused(), [(Auth, 0), (Asg, 0), (Dir, 0)]);
        assert_eq!(gauge(&metrics), "usage_ingest_paused_partitions 3");
        bp.writes_full(&consumer).expect("once");
        assert_eq!(consumer.calls.borrow().len(), 1);
        bp.write_done(&consumer).expect("resumed");
        assert!(!bp.writes_lag() && consumer.paused().is_empty());
        assert_eq!(gauge(&metrics), "usage_ingest_paused_partitions 0");
        // Without a pause for writes, a write through resumes nothing.
        bp.write_done(&consumer).expect("nothing");
        assert_eq!(consumer.calls.borrow().len(), 2);
    }

    #[test]
    fn failing_reads_pause_everything_and_resume_it_when_they_succeed() {
        let (consumer, mut bp, metrics) = setup();
        bp.reads_failing(&consumer).expect("paused");
        assert_eq!(consumer.paused().len(), 3);
        assert_eq!(gauge(&metrics), "usage_ingest_paused_partitions 3");
        bp.reads_done(&consumer, 0).expect("resumed");
        assert!(consumer.paused().is_empty());
    }

    #[test]
    fn a_catch_up_holds_usage_only_and_nothing_else_resumes_it() {
        let (consumer, mut bp, metrics) = setup();
        bp.catch_up(&consumer, true).expect("usage paused");
        assert_eq!(consumer.paused(), [(Auth, 0)]);
        assert_eq!(gauge(&metrics), "usage_ingest_paused_partitions 1");
        // Writes lag and catch up meanwhile: usage stays paused.
        bp.writes_full(&consumer).expect("all paused");
        assert_eq!(consumer.paused().len(), 3);
        bp.write_done(&consumer).expect("reference resumed");
        assert_eq!(consumer.paused(), [(Auth, 0)]);
        // So do failing reads.
        bp.reads_failing(&consumer).expect("all paused");
        bp.reads_done(&consumer, 0).expect("reference resumed");
        assert_eq!(consumer.paused(), [(Auth, 0)]);
        bp.catch_up(&consumer, false).expect("usage flows");
        assert!(consumer.paused().is_empty());
        assert_eq!(gauge(&metrics), "usage_ingest_paused_partitions 0");
    }

    #[test]
    fn a_batch_waiting_on_reference_data_holds_usage_until_a_batch_takes_it() {
        let (consumer, mut bp, _) = setup();
        bp.hold_usage(&consumer).expect("usage paused");
        assert_eq!(consumer.paused(), [(Auth, 0)]);
        // The end of a catch-up does not resume what the wait holds.
        bp.catch_up(&consumer, true).expect("held already");
        bp.catch_up(&consumer, false).expect("still held");
        assert_eq!(consumer.paused(), [(Auth, 0)]);
        bp.release_usage(&consumer).expect("usage flows");
        assert!(consumer.paused().is_empty());
        // While writes lag, there is no separate hold (everything is paused).
        bp.writes_full(&consumer).expect("all paused");
        bp.hold_usage(&consumer).expect("no hold");
        bp.write_done(&consumer).expect("all flows");
        assert!(consumer.paused().is_empty());
    }

    #[test]
    fn a_partition_is_paused_only_once_a_message_of_it_came() {
        let (consumer, mut bp, metrics) = setup();
        bp.assigned(&ALL);
        // The catch-up holds usage, but (Auth, 0) may not be fetching yet.
        bp.catch_up(&consumer, true).expect("nothing paused");
        assert!(consumer.paused().is_empty());
        assert!(consumer.calls.borrow().is_empty(), "no pause, no resume");
        // A reference message: its partition is fetching, no reason holds for it.
        bp.received(&consumer, (Asg, 0)).expect("nothing paused");
        assert!(consumer.paused().is_empty());
        // The first authorization: now it is paused.
        bp.received(&consumer, (Auth, 0)).expect("usage paused");
        assert_eq!(consumer.paused(), [(Auth, 0)]);
        assert_eq!(gauge(&metrics), "usage_ingest_paused_partitions 1");
        bp.received(&consumer, (Auth, 0)).expect("once");
        assert_eq!(consumer.calls.borrow().len(), 1);
        // Writes lag: every partition that came is paused, (Dir, 0) is not.
        bp.writes_full(&consumer).expect("paused");
        assert_eq!(consumer.paused(), [(Auth, 0), (Asg, 0)]);
        bp.write_done(&consumer).expect("resumed");
        bp.catch_up(&consumer, false).expect("usage flows");
        assert!(consumer.paused().is_empty());
    }

    #[test]
    fn revoked_partitions_are_forgotten_and_start_unpaused_when_assigned_again() {
        let (consumer, mut bp, metrics) = setup();
        bp.catch_up(&consumer, true).expect("usage paused");
        assert_eq!(consumer.paused(), [(Auth, 0)]);
        // Revoked: the rebalance callback resumed it in librdkafka.
        bp.revoked(&[(Auth, 0), (Asg, 0), (Dir, 0)]);
        consumer.paused.borrow_mut().clear();
        // Assigned again with one more partition: a new catch-up pauses
        // neither before their first message.
        let assigned = [(Auth, 0), (Auth, 1), (Asg, 0), (Dir, 0)];
        consumer.assigned.replace(assigned.to_vec());
        bp.assigned(&assigned);
        bp.catch_up(&consumer, true).expect("nothing paused yet");
        assert!(consumer.paused().is_empty());
        bp.received(&consumer, (Auth, 1)).expect("usage paused");
        assert_eq!(consumer.paused(), [(Auth, 1)]);
        assert_eq!(gauge(&metrics), "usage_ingest_paused_partitions 1");
        bp.catch_up(&consumer, false).expect("usage flows");
        assert!(consumer.paused().is_empty());
    }
}
