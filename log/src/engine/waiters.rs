//! Produce requests waiting for durability, kept in offset order per partition.

use super::shard::Reply;
use crate::error::{Error, Result};
use crate::partition::Appended;
use std::collections::VecDeque;

/// A produce request waiting for its batches to become durable.
pub(super) enum Waiter {
    /// One batch (`Engine::produce`).
    One(Appended, Reply<Appended>),
    /// Several batches of one request (`Engine::produce_many`), one result each.
    Many(Vec<Result<Appended>>, Reply<Vec<Result<Appended>>>),
}

impl Waiter {
    /// Answers with success for every batch still marked accepted.
    pub(super) fn succeed(self) {
        match self {
            Waiter::One(appended, reply) => {
                let _ = reply.send(Ok(appended));
            }
            Waiter::Many(results, reply) => {
                let _ = reply.send(Ok(results));
            }
        }
    }

    /// Answers a request whose batches at or past `next` (the partition's next offset
    /// after a failed write) were dropped; batches before it are durable.
    pub(super) fn fail_from(self, next: u64, err: &Error) {
        match self {
            Waiter::One(_, reply) => {
                let _ = reply.send(Err(Error::AppendFailed(err.to_string())));
            }
            Waiter::Many(mut results, reply) => {
                fail_accepted_from(&mut results, next, err);
                let _ = reply.send(Ok(results));
            }
        }
    }

    /// Answers the whole request with `err`.
    pub(super) fn fail(self, err: Error) {
        match self {
            Waiter::One(_, reply) => {
                let _ = reply.send(Err(err));
            }
            Waiter::Many(_, reply) => {
                let _ = reply.send(Err(err));
            }
        }
    }
}

/// Marks the accepted batches in `results` whose last offset is at or past `next` failed.
pub(super) fn fail_accepted_from(results: &mut [Result<Appended>], next: u64, err: &Error) {
    for r in results.iter_mut() {
        if matches!(r, Ok(a) if a.last_offset >= next) {
            *r = Err(Error::AppendFailed(err.to_string()));
        }
    }
}

/// A partition's waiting appends, ordered by last offset.
///
/// The order is what lets durability answer from the front and a failed write fail from
/// the back. An idempotent retry of a batch already appended is answered with its
/// original (older) offsets, so it is inserted in place rather than pushed at the back.
#[derive(Default)]
pub(super) struct Waiters(VecDeque<(u64, Waiter)>);

impl Waiters {
    /// Adds `waiter`, whose batches end at offset `last`.
    pub(super) fn push(&mut self, last: u64, waiter: Waiter) {
        let at = self.0.partition_point(|(l, _)| *l <= last);
        self.0.insert(at, (last, waiter));
        debug_assert!(
            self.0
                .iter()
                .zip(self.0.iter().skip(1))
                .all(|(a, b)| a.0 <= b.0)
        );
    }

    /// Answers every waiter whose last offset is below `high_watermark`; true if any.
    pub(super) fn settle(&mut self, high_watermark: u64) -> bool {
        let mut any = false;
        while let Some((last, _)) = self.0.front() {
            if *last >= high_watermark {
                break;
            }
            let (_, waiter) = self.0.pop_front().expect("front exists");
            waiter.succeed();
            any = true;
        }
        any
    }

    /// Fails the waiters a failed write dropped: those with batches at or past `next`.
    pub(super) fn fail_from(&mut self, next: u64, err: &Error) {
        while let Some((last, _)) = self.0.back() {
            if *last < next {
                break;
            }
            let (_, waiter) = self.0.pop_back().expect("back exists");
            waiter.fail_from(next, err);
        }
    }

    /// Removes every waiter, in offset order.
    pub(super) fn drain(&mut self) -> impl Iterator<Item = Waiter> + '_ {
        self.0.drain(..).map(|(_, w)| w)
    }

    /// Number of waiting requests.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    fn appended(base: u64, last: u64) -> Appended {
        Appended {
            base_offset: base,
            last_offset: last,
        }
    }

    #[test]
    fn a_failed_write_fails_only_the_dropped_batches_of_a_many_request() {
        let (tx, mut rx) = oneshot::channel();
        let results = vec![
            Ok(appended(0, 1)),
            Ok(appended(2, 4)),
            Ok(appended(5, 5)),
            Err(Error::ShuttingDown),
        ];
        // The write that failed dropped everything from offset 2 on.
        let err = Error::AppendFailed("disk gone".into());
        Waiter::Many(results, tx).fail_from(2, &err);
        let got = rx.try_recv().unwrap().unwrap();
        assert_eq!(
            got[0].as_ref().unwrap(),
            &appended(0, 1),
            "durable stays Ok"
        );
        assert!(matches!(got[1], Err(Error::AppendFailed(_))));
        assert!(matches!(got[2], Err(Error::AppendFailed(_))));
        assert!(
            matches!(got[3], Err(Error::ShuttingDown)),
            "earlier errors kept"
        );

        let (tx, mut rx) = oneshot::channel();
        Waiter::One(appended(7, 9), tx).fail_from(7, &err);
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(Error::AppendFailed(_))
        ));
        let (tx, mut rx) = oneshot::channel::<Result<Vec<Result<Appended>>>>();
        Waiter::Many(Vec::new(), tx).fail(Error::ShuttingDown);
        assert!(matches!(rx.try_recv().unwrap(), Err(Error::ShuttingDown)));
    }

    #[test]
    fn a_failed_write_fails_every_dropped_waiter_even_after_a_retried_duplicate() {
        let mut waiters = Waiters::default();
        let mut replies = Vec::new();
        for (base, last) in [(10, 19), (20, 29), (0, 9)] {
            // The last one is an idempotent retry answered with its original offsets.
            let (tx, rx) = oneshot::channel();
            waiters.push(last, Waiter::One(appended(base, last), tx));
            replies.push(rx);
        }
        // A write failed: everything from offset 10 on was dropped, 0..=9 is durable.
        waiters.fail_from(10, &Error::AppendFailed("disk gone".into()));
        assert!(matches!(
            replies[0].try_recv(),
            Ok(Err(Error::AppendFailed(_)))
        ));
        assert!(matches!(
            replies[1].try_recv(),
            Ok(Err(Error::AppendFailed(_)))
        ));
        assert!(
            replies[2].try_recv().is_err(),
            "the durable duplicate still waits"
        );
        assert_eq!(waiters.len(), 1);
        assert!(waiters.settle(10));
        assert_eq!(replies[2].try_recv().unwrap().unwrap(), appended(0, 9));
    }

    #[test]
    fn durability_answers_waiters_in_offset_order_whatever_order_they_came_in() {
        let mut waiters = Waiters::default();
        let mut replies = Vec::new();
        for (base, last) in [(5, 9), (0, 4), (10, 14)] {
            let (tx, rx) = oneshot::channel();
            waiters.push(last, Waiter::One(appended(base, last), tx));
            replies.push(rx);
        }
        assert!(waiters.settle(5), "0..=4 is durable");
        assert!(replies[1].try_recv().is_ok());
        assert!(replies[0].try_recv().is_err() && replies[2].try_recv().is_err());
        assert!(!waiters.settle(5), "nothing new");
        assert!(waiters.settle(15));
        assert!(replies[0].try_recv().is_ok() && replies[2].try_recv().is_ok());
        assert_eq!(waiters.len(), 0);
    }
}
