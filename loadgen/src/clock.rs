//! The run clock: monotonic nanoseconds since the start of a load-generator run.
//!
//! Every timestamp the load generator handles — scheduled send times, the send time
//! carried in each payload, acknowledgement and receipt times, the warm-up instant — is a
//! `u64` count of nanoseconds since one [`RunClock`]'s epoch. The producers and the
//! consumers run in the same process and share the clock, so end-to-end latency is a
//! plain subtraction, immune to wall-clock steps; the figures mean nothing across
//! processes (a payload written by another run carries another epoch).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A monotonic clock counting nanoseconds from the instant it was created.
#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    epoch: Instant,
    /// The wall clock at the epoch, microseconds since the Unix epoch.
    wall_epoch_us: i64,
}

impl RunClock {
    /// A clock whose epoch is now.
    pub fn start() -> RunClock {
        RunClock::with_epoch(Instant::now())
    }

    /// A clock whose epoch is `epoch`.
    pub fn with_epoch(epoch: Instant) -> RunClock {
        let wall_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as i64);
        let since = Instant::now().saturating_duration_since(epoch).as_micros() as i64;
        RunClock {
            epoch,
            wall_epoch_us: wall_now - since,
        }
    }

    /// The wall-clock time (microseconds since the Unix epoch) of run time `ns`, read
    /// from the run's start rather than from the system clock again.
    pub fn wall_micros(&self, ns: u64) -> i64 {
        self.wall_epoch_us
            .saturating_add(i64::try_from(ns / 1000).unwrap_or(i64::MAX))
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
    fn wall_micros_follow_the_system_clock_from_the_epoch() {
        let clock = RunClock::start();
        let wall = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_micros() as i64;
        let now = wall(SystemTime::now());
        let at_epoch = clock.wall_micros(0);
        assert!((now - at_epoch).abs() < 1_000_000, "{now} vs {at_epoch}");
        assert_eq!(clock.wall_micros(2_500_000_000), at_epoch + 2_500_000);
    }

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
