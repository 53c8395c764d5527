//! Closed-loop pacing by consumption: producers hold back while more than a bound of
//! messages has been sent and not yet consumed, so a closed loop reports a rate that
//! the consumers sustain too, with a bounded backlog (and so a bounded latency).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use tokio::sync::Notify;

/// Sent-but-unconsumed messages of a run, and the bound on them.
#[derive(Debug)]
pub struct Pace {
    limit: u64,
    sent: AtomicU64,
    consumed: AtomicU64,
    /// Set once a consumer has stopped: the backlog may never clear, so nobody waits.
    closed: AtomicBool,
    room: Notify,
}

impl Pace {
    /// A bound of `limit` unconsumed messages; 0 never holds anyone back.
    pub fn new(limit: u64) -> Pace {
        Pace {
            limit,
            sent: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            closed: AtomicBool::new(false),
            room: Notify::new(),
        }
    }

    /// Whether this pace holds producers back at all.
    pub fn is_bounded(&self) -> bool {
        self.limit > 0
    }

    /// Messages sent but not yet consumed (as last reported by both sides).
    pub fn unconsumed(&self) -> u64 {
        let consumed = self.consumed.load(Ordering::Acquire);
        self.sent.load(Ordering::Acquire).saturating_sub(consumed)
    }

    /// Producers report `n` more messages sent.
    pub fn sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::AcqRel);
    }

    /// Consumers report `n` more messages consumed (first deliveries only), waking
    /// held-back producers.
    pub fn consumed(&self, n: u64) {
        self.consumed.fetch_add(n, Ordering::AcqRel);
        if self.is_bounded() {
            self.room.notify_waiters();
        }
    }

    /// Producers report `n` sent messages that no consumer will see (their delivery
    /// failed), so that they do not hold the bound forever.
    pub fn forget(&self, n: u64) {
        self.consumed(n);
    }

    /// A consumer stopped: from now on nobody is held back.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
    }

    /// Whether a producer may send now.
    pub fn has_room(&self) -> bool {
        !self.is_bounded() || self.closed.load(Ordering::Acquire) || self.unconsumed() < self.limit
    }

    /// Waits until fewer than the bound are unconsumed, or the pace is closed (at once
    /// when unbounded).
    pub async fn wait_for_room(&self) {
        loop {
            let notified = self.room.notified();
            tokio::pin!(notified);
            // Registered before the check, so a report between the two still wakes us.
            notified.as_mut().enable();
            if self.has_room() {
                return;
            }
            notified.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn producers_wait_while_the_backlog_is_at_the_bound() {
        let pace = Arc::new(Pace::new(10));
        pace.sent(10);
        assert_eq!(pace.unconsumed(), 10);
        let waiter = tokio::spawn({
            let pace = pace.clone();
            async move { pace.wait_for_room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "held back at the bound");
        pace.consumed(1);
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("released once a message is consumed")
            .unwrap();
        assert_eq!(pace.unconsumed(), 9);
    }

    #[tokio::test]
    async fn a_closed_pace_or_forgotten_messages_release_producers() {
        let pace = Arc::new(Pace::new(10));
        pace.sent(10);
        pace.forget(3);
        assert!(pace.has_room(), "failed deliveries no longer count");
        pace.sent(3);
        assert!(!pace.has_room());
        let waiter = tokio::spawn({
            let pace = pace.clone();
            async move { pace.wait_for_room().await }
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished());
        pace.close();
        tokio::time::timeout(Duration::from_secs(10), waiter)
            .await
            .expect("a stopped consumer releases the producers")
            .unwrap();
    }

    #[tokio::test]
    async fn an_unbounded_pace_never_waits() {
        let pace = Pace::new(0);
        pace.sent(1_000_000);
        tokio::time::timeout(Duration::from_secs(10), pace.wait_for_room())
            .await
            .unwrap();
    }
}
