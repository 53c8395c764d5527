//! What to send and when: the open- and closed-loop send schedules, the key
//! distributions (none, uniform, Zipf) with the partition each key maps to, and the
//! message-size distributions.
//!
//! # Open loop and coordinated omission
//!
//! In open-loop mode every message has a *scheduled* send time fixed in advance by the
//! target rate ([`OpenLoop::scheduled_ns`]). A producer that falls behind sends the
//! overdue messages as soon as it can, but their latency (and the send time carried in
//! their payload) is measured from the scheduled time, so a stall shows up in the
//! latency of every message it delayed rather than in none (no coordinated omission).
//! In closed-loop mode a producer keeps at most a bounded number of batches in flight
//! and a message's send time is simply when it was sent.

use crate::payload::MIN_MESSAGE_SIZE;
use rand::rngs::SmallRng;
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, Zipf};
use std::fmt;
use std::str::FromStr;
use strata_log::engine::partition_for_key;

/// A specification that cannot be parsed or used.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpecError {
    /// A key distribution that is not `none`, `uniform:K` or `zipf:K:S`.
    #[error(
        "invalid key distribution {0:?}: expected none, uniform:K or zipf:K:S (K >= 1 keys, S >= 0)"
    )]
    Keys(String),
    /// A message size that is not `N`, `MIN..MAX` or `MIN..=MAX`, or is too small.
    #[error("invalid message size {spec:?}: {reason}")]
    Size {
        /// The specification given.
        spec: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A rate that is not a positive finite number.
    #[error("invalid rate {0}: expected a positive number of messages per second")]
    Rate(f64),
    /// A producer index out of range, or no producers.
    #[error("producer {index} of {producers}: expected 0 <= index < producers")]
    Producer {
        /// The index.
        index: u32,
        /// The number of producers.
        producers: u32,
    },
}

/// How producers pace their sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LoadMode {
    /// Closed loop: each producer keeps at most `max_in_flight` batches unacknowledged.
    Closed {
        /// Unacknowledged batches allowed per producer (at least 1).
        max_in_flight: usize,
    },
    /// Open loop: all producers together send `rate` messages per second on schedule.
    Open {
        /// Target messages per second, all producers together.
        rate: f64,
    },
}

/// One producer's open-loop schedule.
///
/// With `producers` producers sharing a total `rate`, producer `k`'s message `i` is due
/// at `start + (i * producers + k) / rate` seconds: the producers' messages interleave
/// evenly, so together they form one smooth stream at the target rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct OpenLoop {
    start_ns: u64,
    total_rate: f64,
    stride: u64,
    phase: u64,
}

impl OpenLoop {
    /// A single producer sending `rate` messages per second from `start_ns`.
    pub fn new(start_ns: u64, rate: f64) -> Result<OpenLoop, SpecError> {
        OpenLoop::for_producer(start_ns, rate, 1, 0)
    }

    /// Producer `index` of `producers` sharing a total of `total_rate` messages per second.
    pub fn for_producer(
        start_ns: u64,
        total_rate: f64,
        producers: u32,
        index: u32,
    ) -> Result<OpenLoop, SpecError> {
        if !(total_rate.is_finite() && total_rate > 0.0) {
            return Err(SpecError::Rate(total_rate));
        }
        if index >= producers {
            return Err(SpecError::Producer { index, producers });
        }
        Ok(OpenLoop {
            start_ns,
            total_rate,
            stride: u64::from(producers),
            phase: u64::from(index),
        })
    }

    /// This producer's rate, messages per second.
    pub fn rate(&self) -> f64 {
        self.total_rate / self.stride as f64
    }

    /// The scheduled send time of this producer's message `i` (0-based), ns since the
    /// run epoch.
    pub fn scheduled_ns(&self, i: u64) -> u64 {
        let slot = i.saturating_mul(self.stride).saturating_add(self.phase);
        let offset = (slot as f64 * 1e9 / self.total_rate).floor();
        self.start_ns.saturating_add(offset as u64)
    }

    /// How many of this producer's messages are due at `now_ns` (scheduled at or before
    /// it): messages `0..due_by(now)` should have been sent by now.
    pub fn due_by(&self, now_ns: u64) -> u64 {
        if now_ns < self.start_ns {
            return 0;
        }
        let slots = (now_ns - self.start_ns) as f64 * self.total_rate / 1e9;
        let estimate = ((slots - self.phase as f64) / self.stride as f64).floor();
        let mut count = if estimate < 0.0 {
            0
        } else {
            (estimate as u64).saturating_add(1)
        };
        // Float rounding can be off by one at a boundary: settle on scheduled_ns.
        while count > 0 && self.scheduled_ns(count - 1) > now_ns {
            count -= 1;
        }
        while self.scheduled_ns(count) <= now_ns && count < u64::MAX {
            count += 1;
        }
        count
    }
}

/// A producer's send schedule: open loop on a timetable, or closed loop.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Schedule {
    /// Messages have scheduled times.
    Open(OpenLoop),
    /// Messages go as fast as `max_in_flight` unacknowledged batches allow.
    Closed {
        /// Unacknowledged batches allowed.
        max_in_flight: usize,
    },
}

impl Schedule {
    /// Producer `index` of `producers`' schedule under `mode`, starting at `start_ns`.
    pub fn for_producer(
        mode: LoadMode,
        start_ns: u64,
        producers: u32,
        index: u32,
    ) -> Result<Schedule, SpecError> {
        match mode {
            LoadMode::Open { rate } => Ok(Schedule::Open(OpenLoop::for_producer(
                start_ns, rate, producers, index,
            )?)),
            LoadMode::Closed { max_in_flight } => Ok(Schedule::Closed {
                max_in_flight: max_in_flight.max(1),
            }),
        }
    }

    /// The send time to stamp on message `i` sent at `now_ns`: its scheduled time in
    /// open loop (latency is measured from it), `now_ns` in closed loop.
    pub fn send_time_ns(&self, i: u64, now_ns: u64) -> u64 {
        match self {
            Schedule::Open(o) => o.scheduled_ns(i),
            Schedule::Closed { .. } => now_ns,
        }
    }
}

/// How record keys are chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum KeyDist {
    /// No keys: records go round-robin over the partitions.
    None,
    /// Keys drawn uniformly from `keys` distinct keys.
    Uniform {
        /// Number of distinct keys.
        keys: u64,
    },
    /// Keys drawn from `keys` distinct keys with Zipf's law: key rank r (1-based) has
    /// probability proportional to `1 / r^exponent`.
    Zipf {
        /// Number of distinct keys.
        keys: u64,
        /// The exponent s (0: uniform; around 1: typical skew).
        exponent: f64,
    },
}

impl FromStr for KeyDist {
    type Err = SpecError;

    /// Parses `none`, `uniform:K` or `zipf:K:S`.
    fn from_str(s: &str) -> Result<KeyDist, SpecError> {
        let err = || SpecError::Keys(s.to_owned());
        let parts: Vec<&str> = s.trim().split(':').collect();
        let keys = |k: &str| -> Result<u64, SpecError> {
            match k.trim().parse::<u64>() {
                Ok(n) if n >= 1 => Ok(n),
                _ => Err(err()),
            }
        };
        match parts.as_slice() {
            ["none"] => Ok(KeyDist::None),
            ["uniform", k] => Ok(KeyDist::Uniform { keys: keys(k)? }),
            ["zipf", k, e] => {
                let exponent: f64 = e.trim().parse().map_err(|_| err())?;
                if !(exponent.is_finite() && exponent >= 0.0) {
                    return Err(err());
                }
                Ok(KeyDist::Zipf {
                    keys: keys(k)?,
                    exponent,
                })
            }
            _ => Err(err()),
        }
    }
}

impl fmt::Display for KeyDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyDist::None => write!(f, "none"),
            KeyDist::Uniform { keys } => write!(f, "uniform:{keys}"),
            KeyDist::Zipf { keys, exponent } => write!(f, "zipf:{keys}:{exponent}"),
        }
    }
}

/// Longest key: `"key-"` and up to 20 decimal digits.
pub const MAX_KEY_LEN: usize = 24;

/// A record key, `key-<index>`, held inline (no allocation).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Key {
    buf: [u8; MAX_KEY_LEN],
    len: u8,
}

impl Key {
    /// The key of key index `index`.
    pub fn new(index: u64) -> Key {
        let mut buf = [0u8; MAX_KEY_LEN];
        buf[..4].copy_from_slice(b"key-");
        let mut digits = [0u8; 20];
        let mut n = index;
        let mut d = 0;
        loop {
            digits[d] = b'0' + (n % 10) as u8;
            d += 1;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        for (i, b) in digits[..d].iter().rev().enumerate() {
            buf[4 + i] = *b;
        }
        Key {
            buf,
            len: (4 + d) as u8,
        }
    }

    /// The key's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl AsRef<[u8]> for Key {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", String::from_utf8_lossy(self.as_bytes()))
    }
}

/// Where the next record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// Its key, if keyed.
    pub key: Option<Key>,
    /// Its partition (of the topic's partitions).
    pub partition: u32,
}

/// Draws keys (and their partitions) from a [`KeyDist`]; one per producer, seeded.
#[derive(Debug, Clone)]
pub struct KeyGen {
    dist: KeyDist,
    rng: SmallRng,
    zipf: Option<Zipf<f64>>,
    next_partition: u32,
}

impl KeyGen {
    /// A generator for `dist` seeded with `seed` (use a different seed per producer).
    pub fn new(dist: KeyDist, seed: u64) -> Result<KeyGen, SpecError> {
        let zipf = match dist {
            KeyDist::Zipf { keys, exponent } => Some(
                Zipf::new(keys as f64, exponent).map_err(|_| SpecError::Keys(dist.to_string()))?,
            ),
            KeyDist::Uniform { keys: 0 } => return Err(SpecError::Keys(dist.to_string())),
            _ => None,
        };
        Ok(KeyGen {
            dist,
            rng: SmallRng::seed_from_u64(seed),
            zipf,
            // Spread keyless producers' round-robin starting points.
            next_partition: (seed % 1024) as u32,
        })
    }

    /// The distribution.
    pub fn dist(&self) -> KeyDist {
        self.dist
    }

    /// The next key index (0-based; under Zipf, 0 is the most frequent), or `None` for
    /// keyless records.
    pub fn next_index(&mut self) -> Option<u64> {
        match self.dist {
            KeyDist::None => None,
            KeyDist::Uniform { keys } => Some(self.rng.random_range(0..keys)),
            KeyDist::Zipf { keys, .. } => {
                let zipf = self.zipf.as_ref()?;
                let rank = zipf.sample(&mut self.rng) as u64;
                Some(rank.clamp(1, keys) - 1)
            }
        }
    }

    /// The next record's key and partition among `partitions`: by key hash when keyed,
    /// round-robin otherwise.
    pub fn next_target(&mut self, partitions: u32) -> Target {
        let partitions = partitions.max(1);
        match self.next_index() {
            Some(i) => {
                let key = Key::new(i);
                Target {
                    partition: partition_for_key(key.as_bytes(), partitions),
                    key: Some(key),
                }
            }
            None => {
                let partition = self.next_partition % partitions;
                self.next_partition = self.next_partition.wrapping_add(1);
                Target {
                    key: None,
                    partition,
                }
            }
        }
    }
}

/// How message sizes are chosen (payload bytes, header included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeDist {
    /// Every message has this size.
    Fixed(usize),
    /// Sizes drawn uniformly from `min..=max`.
    Uniform {
        /// Smallest size.
        min: usize,
        /// Largest size (inclusive).
        max: usize,
    },
}

impl SizeDist {
    /// The smallest size this can produce.
    pub fn min(&self) -> usize {
        match *self {
            SizeDist::Fixed(n) => n,
            SizeDist::Uniform { min, .. } => min,
        }
    }

    /// The largest size this can produce.
    pub fn max(&self) -> usize {
        match *self {
            SizeDist::Fixed(n) => n,
            SizeDist::Uniform { max, .. } => max,
        }
    }

    /// The mean size.
    pub fn mean(&self) -> f64 {
        (self.min() as f64 + self.max() as f64) / 2.0
    }
}

impl FromStr for SizeDist {
    type Err = SpecError;

    /// Parses `N`, or `MIN..MAX` / `MIN..=MAX` (both inclusive of MAX); every size must be
    /// at least the payload header ([`MIN_MESSAGE_SIZE`] bytes).
    fn from_str(s: &str) -> Result<SizeDist, SpecError> {
        let err = |reason: String| SpecError::Size {
            spec: s.to_owned(),
            reason,
        };
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|_| err(format!("{:?} is not a byte count", t.trim())))
        };
        let dist = match s.split_once("..") {
            None => SizeDist::Fixed(num(s)?),
            Some((a, b)) => {
                let b = b.strip_prefix('=').unwrap_or(b);
                let (min, max) = (num(a)?, num(b)?);
                if min > max {
                    return Err(err(format!("the minimum {min} exceeds the maximum {max}")));
                }
                if min == max {
                    SizeDist::Fixed(min)
                } else {
                    SizeDist::Uniform { min, max }
                }
            }
        };
        if dist.min() < MIN_MESSAGE_SIZE {
            return Err(err(format!(
                "messages must be at least {MIN_MESSAGE_SIZE} bytes (the payload header)"
            )));
        }
        if dist.max() > crate::payload::MAX_MESSAGE_SIZE {
            return Err(err("too large for the payload's 32-bit length".to_owned()));
        }
        Ok(dist)
    }
}

impl fmt::Display for SizeDist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SizeDist::Fixed(n) => write!(f, "{n}"),
            SizeDist::Uniform { min, max } => write!(f, "{min}..{max}"),
        }
    }
}

/// Draws message sizes from a [`SizeDist`]; one per producer, seeded.
#[derive(Debug, Clone)]
pub struct SizeGen {
    dist: SizeDist,
    rng: SmallRng,
}

impl SizeGen {
    /// A generator for `dist` seeded with `seed`.
    pub fn new(dist: SizeDist, seed: u64) -> SizeGen {
        SizeGen {
            dist,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    /// The next message size.
    pub fn next_size(&mut self) -> usize {
        match self.dist {
            SizeDist::Fixed(n) => n,
            SizeDist::Uniform { min, max } => self.rng.random_range(min..=max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn open_loop_schedule_is_exact_and_interleaves_producers() {
        let o = OpenLoop::new(5_000, 1_000.0).unwrap();
        assert_eq!(o.scheduled_ns(0), 5_000);
        assert_eq!(o.scheduled_ns(1), 1_005_000);
        assert_eq!(o.scheduled_ns(1_000_000), 1_000_000_005_000);
        assert_eq!(o.due_by(0), 0);
        assert_eq!(o.due_by(5_000), 1);
        assert_eq!(o.due_by(1_004_999), 1);
        assert_eq!(o.due_by(1_005_000), 2);
        // Four producers at 4000/s total: each at 1000/s, offset by 250 µs.
        let ps: Vec<_> = (0..4)
            .map(|k| OpenLoop::for_producer(0, 4_000.0, 4, k).unwrap())
            .collect();
        assert_eq!(ps[1].rate(), 1_000.0);
        let mut all: Vec<u64> = ps
            .iter()
            .flat_map(|p| (0..100).map(|i| p.scheduled_ns(i)))
            .collect();
        all.sort_unstable();
        assert!(
            all.windows(2).all(|w| w[1] - w[0] == 250_000),
            "{:?}",
            &all[..8]
        );
        assert!(OpenLoop::new(0, 0.0).is_err());
        assert!(OpenLoop::new(0, f64::NAN).is_err());
        assert!(OpenLoop::for_producer(0, 1.0, 2, 2).is_err());
    }

    #[test]
    fn schedule_stamps_scheduled_or_actual_times() {
        let open = Schedule::for_producer(LoadMode::Open { rate: 100.0 }, 0, 1, 0).unwrap();
        assert_eq!(open.send_time_ns(3, 999_999_999), 30_000_000);
        let closed =
            Schedule::for_producer(LoadMode::Closed { max_in_flight: 0 }, 0, 1, 0).unwrap();
        assert_eq!(closed, Schedule::Closed { max_in_flight: 1 });
        assert_eq!(closed.send_time_ns(3, 42), 42);
    }

    #[test]
    fn parses_key_distributions() {
        assert_eq!("none".parse(), Ok(KeyDist::None));
        assert_eq!("uniform:1000".parse(), Ok(KeyDist::Uniform { keys: 1000 }));
        assert_eq!(
            "zipf:500:1.2".parse(),
            Ok(KeyDist::Zipf {
                keys: 500,
                exponent: 1.2
            })
        );
        for bad in [
            "",
            "uniform",
            "uniform:0",
            "uniform:x",
            "zipf:10",
            "zipf:10:-1",
            "zipf:0:1",
            "zipf:10:nan",
            "hash:3",
        ] {
            let e = bad.parse::<KeyDist>().unwrap_err();
            assert!(
                e.to_string().contains("none, uniform:K or zipf:K:S"),
                "{bad}: {e}"
            );
        }
        for spec in ["none", "uniform:7", "zipf:100:0.99"] {
            assert_eq!(spec.parse::<KeyDist>().unwrap().to_string(), spec);
        }
    }

    #[test]
    fn keys_are_formatted_inline() {
        assert_eq!(Key::new(0).as_bytes(), b"key-0");
        assert_eq!(Key::new(1234).as_bytes(), b"key-1234");
        assert_eq!(Key::new(u64::MAX).as_bytes(), b"key-18446744073709551615");
        assert_eq!(format!("{:?}", Key::new(7)), "Key(key-7)");
    }

    #[test]
    fn keyless_targets_go_round_robin() {
        let mut g = KeyGen::new(KeyDist::None, 0).unwrap();
        let parts: Vec<u32> = (0..8).map(|_| g.next_target(4).partition).collect();
        assert_eq!(parts, vec![0, 1, 2, 3, 0, 1, 2, 3]);
        assert!(g.next_target(4).key.is_none());
    }

    #[test]
    fn uniform_keys_cover_the_key_space_evenly() {
        let mut g = KeyGen::new(KeyDist::Uniform { keys: 10 }, 1).unwrap();
        let mut counts = [0u32; 10];
        for _ in 0..100_000 {
            counts[g.next_index().unwrap() as usize] += 1;
        }
        assert!(
            counts.iter().all(|&c| (9_000..11_000).contains(&c)),
            "{counts:?}"
        );
        let t = g.next_target(8);
        let key = t.key.unwrap();
        assert_eq!(t.partition, partition_for_key(key.as_bytes(), 8));
    }

    #[test]
    fn zipf_keys_follow_the_power_law() {
        let (keys, s) = (100u64, 1.0);
        let mut g = KeyGen::new(KeyDist::Zipf { keys, exponent: s }, 7).unwrap();
        let n = 200_000;
        let mut counts = vec![0u32; keys as usize];
        for _ in 0..n {
            let i = g.next_index().unwrap();
            assert!(i < keys);
            counts[i as usize] += 1;
        }
        let h: f64 = (1..=keys).map(|r| 1.0 / (r as f64).powf(s)).sum();
        for rank in [1usize, 2, 10] {
            let expected = n as f64 / (rank as f64).powf(s) / h;
            let got = f64::from(counts[rank - 1]);
            assert!(
                (got - expected).abs() / expected < 0.05,
                "rank {rank}: {got} vs {expected}"
            );
        }
        // Exponent 0 is uniform.
        let mut flat = KeyGen::new(
            KeyDist::Zipf {
                keys: 4,
                exponent: 0.0,
            },
            3,
        )
        .unwrap();
        let mut c = [0u32; 4];
        for _ in 0..40_000 {
            c[flat.next_index().unwrap() as usize] += 1;
        }
        assert!(c.iter().all(|&x| (9_000..11_000).contains(&x)), "{c:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_keys() {
        let d = KeyDist::Zipf {
            keys: 1000,
            exponent: 1.1,
        };
        let a: Vec<_> = {
            let mut g = KeyGen::new(d, 99).unwrap();
            (0..100).map(|_| g.next_index()).collect()
        };
        let mut g = KeyGen::new(d, 99).unwrap();
        let b: Vec<_> = (0..100).map(|_| g.next_index()).collect();
        assert_eq!(a, b);
        assert_eq!(g.dist(), d);
    }

    #[test]
    fn parses_and_draws_sizes() {
        assert_eq!("100".parse(), Ok(SizeDist::Fixed(100)));
        assert_eq!(
            "64..256".parse(),
            Ok(SizeDist::Uniform { min: 64, max: 256 })
        );
        assert_eq!(
            "64..=256".parse(),
            Ok(SizeDist::Uniform { min: 64, max: 256 })
        );
        assert_eq!("50..50".parse(), Ok(SizeDist::Fixed(50)));
        let e = "39".parse::<SizeDist>().unwrap_err().to_string();
        assert!(e.contains("at least 40 bytes"), "{e}");
        let e = "20..100".parse::<SizeDist>().unwrap_err().to_string();
        assert!(e.contains("at least 40 bytes"), "{e}");
        let e = "300..200".parse::<SizeDist>().unwrap_err().to_string();
        assert!(e.contains("exceeds the maximum"), "{e}");
        assert!("abc".parse::<SizeDist>().is_err());
        assert!("1..".parse::<SizeDist>().is_err());
        assert_eq!(
            SizeDist::Uniform { min: 64, max: 256 }.to_string(),
            "64..256"
        );
        assert_eq!(SizeDist::Uniform { min: 64, max: 256 }.mean(), 160.0);
        let mut g = SizeGen::new(SizeDist::Uniform { min: 64, max: 67 }, 5);
        let mut seen = [false; 4];
        for _ in 0..1000 {
            let s = g.next_size();
            assert!((64..=67).contains(&s));
            seen[s - 64] = true;
        }
        assert!(seen.iter().all(|&x| x));
        assert_eq!(SizeGen::new(SizeDist::Fixed(100), 0).next_size(), 100);
    }

    proptest! {
        #[test]
        fn due_by_agrees_with_the_schedule(rate in 1.0f64..5e6, producers in 1u32..16,
                                          index in 0u32..16, start in 0u64..1u64 << 40,
                                          probe in 0u64..1u64 << 36) {
            let index = index % producers;
            let o = OpenLoop::for_producer(start, rate, producers, index).unwrap();
            let now = start.saturating_add(probe);
            let due = o.due_by(now);
            if due > 0 {
                prop_assert!(o.scheduled_ns(due - 1) <= now);
            }
            prop_assert!(o.scheduled_ns(due) > now);
            prop_assert!(o.scheduled_ns(due) >= o.scheduled_ns(due.saturating_sub(1)));
        }
    }
}
