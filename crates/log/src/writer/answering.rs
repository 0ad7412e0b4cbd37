//! Appends answered in order, those sent together ([`Reply::Many`]) at once.

use tokio::sync::oneshot;

use super::Reply;
use crate::{AppendOutcome, LogError, Result};

/// Sends appends' outcomes to their replies, in the order of the appends; the
/// outcomes of a [`Reply::Many`] are collected and sent when its last append is
/// answered (or, should it ever be cut short, when this is dropped).
#[derive(Default)]
pub(super) struct Answering {
    many: Option<Collecting>,
}

/// The outcomes of a [`Reply::Many`] so far, and how many it waits for.
struct Collecting {
    tx: oneshot::Sender<Vec<Result<AppendOutcome>>>,
    count: usize,
    outcomes: Vec<Result<AppendOutcome>>,
}

impl Answering {
    pub(super) fn answer(&mut self, reply: Reply, outcome: Result<Vec<AppendOutcome>>) {
        match reply {
            Reply::One(tx) => {
                let _ = tx.send(outcome);
                return;
            }
            Reply::Many { tx, count } => {
                self.finish();
                self.many = Some(Collecting {
                    tx,
                    count,
                    outcomes: Vec::with_capacity(count),
                });
            }
            Reply::InMany => {}
        }
        if let Some(many) = &mut self.many {
            // A one-part append has one outcome.
            many.outcomes
                .push(outcome.and_then(|mut o| o.pop().ok_or(LogError::Closed)));
            if many.outcomes.len() == many.count {
                self.finish();
            }
        }
    }

    fn finish(&mut self) {
        if let Some(many) = self.many.take() {
            let _ = many.tx.send(many.outcomes);
        }
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(position: u64) -> Result<Vec<AppendOutcome>> {
        Ok(vec![AppendOutcome {
            positions: vec![position],
            stream_version: 0,
            duplicate: false,
        }])
    }

    fn positions(answer: Vec<Result<AppendOutcome>>) -> Vec<Option<u64>> {
        answer.into_iter().map(|o| o.ok().map(|o| o.first_position())).collect()
    }

    #[test]
    fn appends_sent_together_are_answered_together_in_order() {
        let (many, mut many_rx) = oneshot::channel();
        let (one, mut one_rx) = oneshot::channel();
        let (next, mut next_rx) = oneshot::channel();
        let mut answering = Answering::default();
        answering.answer(Reply::Many { tx: many, count: 3 }, outcome(1));
        answering.answer(Reply::InMany, Err(LogError::Closed));
        assert!(many_rx.try_recv().is_err(), "answered before its last append");
        answering.answer(Reply::InMany, outcome(2));
        assert_eq!(
            many_rx.try_recv().map(positions).ok(),
            Some(vec![Some(1), None, Some(2)])
        );
        answering.answer(Reply::One(one), outcome(3));
        assert!(one_rx.try_recv().is_ok_and(|o| o.is_ok()));
        // One cut short is answered with what it has when answering ends.
        answering.answer(Reply::Many { tx: next, count: 2 }, outcome(4));
        drop(answering);
        assert_eq!(next_rx.try_recv().map(positions).ok(), Some(vec![Some(4)]));
    }
}
