//! The run clock: monotonic nanoseconds since the start of a load-generator run.
//!
//! Every timestamp the load generator handles — scheduled send times, the send time
//! carried in each payload, acknowledgement and receipt times, the warm-up instant — is a
//! `u64` count of nanoseconds since one [`RunClock`]'s epoch. The producers and the
//! consumers run in the same process and share the clock, so end-to-end latency is a
//! plain subtraction, immune to wall-clock steps; the figures mean nothing across
//! processes (a payload written by another run carries another epoch).

use std::time::{Duration, Instant};

/// A monotonic clock counting nanoseconds from the instant it was created.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    epoch: Instant,
}

impl RunClock {
    /// A clock whose epoch is now.
    pub fn start() -> RunClock {
        RunClock {
            epoch: Instant::now(),
        }
    }

    /// A clock whose epoch is `epoch`.
    pub fn with_epoch(epoch: Instant) -> RunClock {
        RunClock { epoch }
    }

    /// The epoch (nanosecond 0).
    pub fn epoch(&self) -> Instant {
        self.epoch
    }

    /// Nanoseconds elapsed since the epoch (saturating at `u64::MAX`, some 584 years).
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// `instant` as nanoseconds since the epoch (0 for instants before it).
    pub fn ns_at(&self, instant: Instant) -> u64 {
        let d = instant.saturating_duration_since(self.epoch);
        u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
    }

    /// The instant `ns` nanoseconds after the epoch (for sleeping until a scheduled time).
    pub fn instant_at(&self, ns: u64) -> Instant {
        self.epoch + Duration::from_nanos(ns)
    }
}

/// Converts a duration to whole nanoseconds, saturating at `u64::MAX`.
pub fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_instants_and_is_monotonic() {
        let clock = RunClock::start();
        let a = clock.now_ns();
        let b = clock.now_ns();
        assert!(b >= a);
        let at = clock.instant_at(1_500_000_000);
        assert_eq!(clock.ns_at(at), 1_500_000_000);
        if let Some(before) = clock.epoch().checked_sub(Duration::from_secs(1)) {
            assert_eq!(clock.ns_at(before), 0);
        }
        assert_eq!(duration_ns(Duration::from_millis(3)), 3_000_000);
        assert_eq!(duration_ns(Duration::MAX), u64::MAX);
    }
}
