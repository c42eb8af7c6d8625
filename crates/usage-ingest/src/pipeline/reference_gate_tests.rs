//! One test per transition of the reference gate.

use super::*;

use Topic::{Assignments as Asg, Directory as Dir};

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// A batch due with `usage` authorizations.
fn due(usage: usize) -> Due {
    Due {
        usage,
        pending: 0,
        overfull: false,
    }
}

fn batch(cut: usize, read_at: Option<Instant>) -> Flush {
    Flush::Batch {
        cut,
        read_at,
        hold_usage: false,
    }
}

#[test]
fn an_assignment_with_reference_partitions_starts_a_catch_up_that_every_end_finishes() {
    let t0 = Instant::now();
    let mut gate = ReferenceGate::new(t0);
    // Partition 0 of both reference topics, partition 1 of one.
    assert!(gate.assigned(&[0, 0, 1], t0));
    assert!(gate.is_catching_up());
    assert_eq!(gate.reached_end(0, t0 + ms(1)), None);
    assert_eq!(gate.reached_end(1, t0 + ms(2)), None);
    // An end of a partition number that is not awaited changes nothing.
    assert_eq!(gate.reached_end(7, t0 + ms(3)), None);
    assert_eq!(gate.reached_end(0, t0 + ms(40)), Some(ms(40)));
    assert!(!gate.is_catching_up());
    // Ends after the catch-up are nothing to it.
    assert_eq!(gate.reached_end(0, t0 + ms(50)), None);
}

#[test]
fn an_assignment_without_reference_partitions_ends_any_catch_up() {
    let t0 = Instant::now();
    let mut gate = ReferenceGate::new(t0);
    assert!(gate.assigned(&[0], t0));
    assert!(!gate.assigned(&[], t0));
    assert!(!gate.is_catching_up());
}

#[test]
fn a_batch_with_nothing_to_stamp_goes_without_asking_and_drops_an_unused_answer() {
    let t0 = Instant::now();
    let mut gate = ReferenceGate::new(t0);
    assert_eq!(gate.flush(due(0), t0), batch(0, None));
    assert!(gate.is_idle());
    gate.ask(0, t0);
    gate.answered(Some(vec![]));
    assert_eq!(gate.flush(due(0), t0), batch(0, None));
    assert!(gate.is_idle());
    // A question out stays out.
    gate.ask(0, t0);
    assert_eq!(gate.flush(due(0), t0), batch(0, None));
    assert!(gate.is_asking());
}

#[test]
fn a_batch_with_usage_asks_then_waits_for_the_answer() {
    let t0 = Instant::now();
    let mut gate = ReferenceGate::new(t0);
    assert_eq!(gate.flush(due(3), t0), Flush::Ask);
    let question = gate.ask(3, t0);
    assert_eq!(
        question,
        Question {
            at: t0,
            cut: 3,
            after_catch_up: true
        }
    );
    assert!(gate.is_asking() && !gate.is_idle());
    assert_eq!(
        gate.flush(due(5), t0 + ms(1)),
        Flush::Wait { unread: false }
    );
    // Held-back authorizations alone also need the answer.
    let mut gate = ReferenceGate::new(t0);
    let held = Due {
        usage: 0,
        pending: 2,
        overfull: false,
    };
    assert_eq!(gate.flush(held, t0), Flush::Ask);
}

#[test]
fn an_answer_read_through_lets_the_batch_take_the_usage_received_before_the_question() {
    let t0 = Instant::now();
    let mut gate = ReferenceGate::new(t0);
    gate.received(Asg, 0, 9, t0);
    let question = gate.ask(2, t0 + ms(1));
    gate.answered(Some(vec![((Asg, 0), 10)]));
    assert!(gate.has_answer());
    assert_eq!(
        gate.flush(due(5), t0 + ms(2)),
        batch(2, Some(question.at)),
        "read to offset 10: proven at the question"
    );
    assert!(gate.is_idle(), "the answer is used once");
}

#[test]
fn an_answer_with_unread_reference_data_holds_the_batch_until_it_comes() {
    let t0 = Instant::now();
    let mut gate = ReferenceGate::new(t0);
    gate.received(Dir, 0, 4, t0);
    let question = gate.ask(1, t0);
    gate.answered(Some(vec![((Dir, 0), 8)]));
    assert_eq!(gate.flush(due(1), t0 + ms(5)), Flush::Wait { unread: true });
    // Overfull meanwhile: the reference data received is written, nothing stamped.
    let overfull = Due {
        overfull: true,
        ..due(1)
    };
    assert_eq!(
        gate.flush(overfull, t0 + ms(6)),
        Flush::Batch {
            cut: 0,
            read_at: None,
            hold_usage: true
        }
    );
    assert!(gate.has_answer(), "the answer is kept for the usage");
    gate.received(Dir, 0, 7, t0 + ms(7));
    assert_eq!(gate.flush(due(1), t0 + ms(8)), batch(1, Some(question.at)));
}

#[test]
fn a_partition_that_does_not_reach_the_end_given_is_taken_as_read_after_the_wait() {
    let t0 = Instant::now();
    let mut gate = ReferenceGate::new(t0);
    gate.received(Asg, 0, 4, t0);
    gate.ask(1, t0);
    gate.answered(Some(vec![((Asg, 0), 6)]));
    // Reference messages keep coming: the wait goes on past REFERENCE_WAIT.
    gate.received(Asg, 0, 4, t0 + ms(1_500));
    assert_eq!(
        gate.flush(due(1), t0 + ms(2_500)),
        Flush::Wait { unread: true }
    );
    // None for REFERENCE_WAIT: offset 6 (a commit marker) is taken as read,
    // proving nothing for holds.
    let late = t0 + ms(1_500) + REFERENCE_WAIT;
    assert_eq!(gate.flush(due(1), late), batch(1, None));
    // The floor stays: the next answer with the same end is read through.
    let question = gate.ask(1, late);
    gate.answered(Some(vec![((Asg, 0), 6)]));
    assert_eq!(gate.flush(due(1), late), batch(1, Some(question.at)));
}

#[test]
fn no_answer_from_the_broker_lets_the_batch_go_proving_nothing() {
    let t0 = Instant::now();
    let mut gate = ReferenceGate::new(t0);
    gate.ask(4, t0);
    gate.answered(None);
    assert_eq!(gate.flush(due(6), t0), batch(4, None));
}

#[test]
fn after_the_catch_up_a_partition_nothing_came_from_starts_at_its_end() {
    let t0 = Instant::now();
    let mut gate = ReferenceGate::new(t0);
    gate.assigned(&[0, 0], t0);
    // Asked during the catch-up: no floor from its answer.
    let during = gate.ask(0, t0);
    assert!(!during.after_catch_up);
    gate.answered(Some(vec![((Asg, 0), 5), ((Dir, 0), 3)]));
    assert_eq!(gate.flush(due(1), t0), Flush::Wait { unread: true });
    gate.revoked(&[]);
    gate.reached_end(0, t0);
    gate.reached_end(0, t0);
    // After it: the directory partition (nothing received) starts at its
    // end; the assignments partition was read to 5.
    gate.received(Asg, 0, 4, t0);
    let after = gate.ask(1, t0);
    assert!(after.after_catch_up);
    gate.answered(Some(vec![((Asg, 0), 5), ((Dir, 0), 3)]));
    assert_eq!(gate.flush(due(1), t0), batch(1, Some(after.at)));
    // A later answer with a further end waits for the message.
    let next = gate.ask(1, t0);
    gate.answered(Some(vec![((Asg, 0), 5), ((Dir, 0), 4)]));
    assert_eq!(gate.flush(due(1), t0), Flush::Wait { unread: true });
    gate.received(Dir, 0, 3, t0);
    assert_eq!(gate.flush(due(1), t0), batch(1, Some(next.at)));
}

#[test]
fn a_revocation_forgets_its_partitions_and_the_question() {
    let t0 = Instant::now();
    let mut gate = ReferenceGate::new(t0);
    gate.received(Asg, 0, 9, t0);
    gate.received(Asg, 1, 9, t0);
    gate.ask(2, t0);
    gate.revoked(&[(Asg, 0)]);
    assert!(gate.is_idle());
    // A late answer to the forgotten question is dropped.
    gate.answered(Some(vec![]));
    assert!(gate.is_idle());
    // Assigned again (a catch-up): offset 9 of partition 0 is no longer
    // known read; of partition 1 it is.
    gate.assigned(&[0], t0);
    let question = gate.ask(1, t0);
    gate.answered(Some(vec![((Asg, 0), 10), ((Asg, 1), 10)]));
    assert_eq!(gate.flush(due(1), t0), Flush::Wait { unread: true });
    gate.received(Asg, 0, 9, t0);
    assert_eq!(gate.flush(due(1), t0), batch(1, Some(question.at)));
}
