//! The delivery verifier: a pure state machine (no I/O, no clock) fed with what producers
//! had acknowledged and what consumers received, counting every delivery fault.
//!
//! # What is counted
//!
//! A *stream* is one producer's messages to one partition; its sequences are dense from 0
//! (see [`crate::payload`]). Every delivery is classified once, by the first rule that
//! applies, in this order:
//!
//! 1. **redelivered** — the (partition, offset) was delivered before: a re-read after a
//!    consumer-group rebalance or a restart from a committed offset. Not a fault, and
//!    nothing else is checked (the first delivery of that offset was).
//! 2. **corrupted** — the payload failed [`decode`] (checksum,
//!    magic, length), or decoded fine but names another partition than the one it was
//!    read from (also counted as `misrouted`). A corrupted delivery says nothing
//!    trustworthy about which message it was, so the message it replaced stays missing
//!    (and is `lost` if it was acknowledged and no intact copy arrives).
//! 3. **duplicated** — the (producer, partition, sequence) was already received at
//!    another offset: the log holds the message twice.
//! 4. **reordered** — the sequence went backwards within its stream, in offset order:
//!    the record at a higher offset than the stream's last one carries a lower sequence
//!    (or, for a late arrival at a lower offset, a higher one). Each backward step counts
//!    once; the message still counts as received.
//!
//! At the end, **lost** = acknowledged (producer, partition, sequence) never received
//! intact. Messages received but never acknowledged (acks `none`, or acks still in
//! flight when the run stopped) are reported separately, not as faults.
//!
//! Order is judged in offset order, which is exact when each partition's records are
//! reported in offset order (as one fetch returns them), and never reports a false
//! reordering when consumers overlap (a late delivery below the stream's last offset is
//! only flagged if it carries a higher sequence).
//!
//! # Memory
//!
//! Per partition: the delivered offsets as a [`RangeSet`]; per stream: the acknowledged
//! and the received sequences as [`RangeSet`]s and the last (offset, sequence) seen. A
//! [`RangeSet`] stores disjoint intervals, so in-order traffic costs one interval per
//! set whatever the message count, and the worst case (every other message missing) is
//! bounded by the number of messages in the run.
//!
//! # Concurrency
//!
//! [`Verifier`] covers the whole run. A driver whose producers and consumers run on
//! several threads can instead keep one [`PartitionVerifier`] per partition (each
//! behind its own lock, taken once per acknowledged batch or fetched batch, never per
//! message) and add their [`Summary`]s at the end.

use crate::payload::{Fields, PayloadError, decode};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

/// A set of `u64` values stored as disjoint, non-adjacent half-open intervals.
///
/// Values must be below `u64::MAX` (which cannot start a one-element interval).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RangeSet {
    /// start -> end (exclusive); intervals neither overlap nor touch.
    ranges: BTreeMap<u64, u64>,
    len: u64,
}

fn overlap(s: u64, e: u64, a: u64, b: u64) -> u64 {
    e.min(b).saturating_sub(s.max(a))
}

impl RangeSet {
    /// An empty set.
    pub fn new() -> RangeSet {
        RangeSet::default()
    }

    /// Number of values in the set.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of intervals stored (the memory it takes, in intervals).
    pub fn interval_count(&self) -> usize {
        self.ranges.len()
    }

    /// Whether `value` is in the set.
    pub fn contains(&self, value: u64) -> bool {
        self.ranges
            .range(..=value)
            .next_back()
            .is_some_and(|(_, &e)| value < e)
    }

    /// The largest value in the set.
    pub fn max(&self) -> Option<u64> {
        self.ranges.last_key_value().map(|(_, &e)| e - 1)
    }

    /// The intervals, in increasing order.
    pub fn ranges(&self) -> impl Iterator<Item = Range<u64>> + '_ {
        self.ranges.iter().map(|(&s, &e)| s..e)
    }

    /// Inserts `value`; true if it was not in the set.
    pub fn insert(&mut self, value: u64) -> bool {
        debug_assert!(value < u64::MAX, "RangeSet values must be below u64::MAX");
        // Fast path: extending the last interval (in-order traffic).
        if let Some(mut last) = self.ranges.last_entry() {
            let (s, e) = (*last.key(), *last.get());
            if value == e {
                *last.get_mut() = e + 1;
                self.len += 1;
                return true;
            }
            if value >= s && value < e {
                return false;
            }
        }
        self.insert_range(value..value.saturating_add(1)) == 1
    }

    /// Inserts every value of `range`; returns how many were not in the set.
    pub fn insert_range(&mut self, range: Range<u64>) -> u64 {
        if range.start >= range.end {
            return 0;
        }
        let (mut start, mut end) = (range.start, range.end);
        let mut already = 0;
        if let Some((&s, &e)) = self.ranges.range(..=start).next_back() {
            if e >= start {
                already += overlap(s, e, range.start, range.end);
                start = s;
                end = end.max(e);
                self.ranges.remove(&s);
            }
        }
        while let Some((&s, &e)) = self.ranges.range(start..=end).next() {
            already += overlap(s, e, range.start, range.end);
            end = end.max(e);
            self.ranges.remove(&s);
        }
        self.ranges.insert(start, end);
        let added = (range.end - range.start) - already;
        self.len += added;
        added
    }

    /// Number of values of `self` that are not in `other`.
    pub fn count_not_in(&self, other: &RangeSet) -> u64 {
        let mut missing = 0;
        for (&s, &e) in &self.ranges {
            let mut covered = 0;
            if let Some((&os, &oe)) = other.ranges.range(..s).next_back() {
                covered += overlap(os, oe, s, e);
            }
            for (&os, &oe) in other.ranges.range(s..e) {
                covered += overlap(os, oe, s, e);
            }
            missing += (e - s) - covered;
        }
        missing
    }
}

/// What a consumer received at one offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// A payload that decoded and passed its checksum.
    Intact(Fields),
    /// A payload that failed to decode (altered, truncated, foreign).
    Corrupted,
}

impl From<Result<Fields, PayloadError>> for Delivery {
    fn from(r: Result<Fields, PayloadError>) -> Delivery {
        match r {
            Ok(f) => Delivery::Intact(f),
            Err(_) => Delivery::Corrupted,
        }
    }
}

/// How one delivery was classified (see the module documentation for the rules).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// First intact delivery of the message, in order.
    New,
    /// First intact delivery of the message, but its sequence went backwards.
    Reordered,
    /// The message was already received at another offset.
    Duplicate,
    /// The payload failed to decode.
    Corrupted,
    /// The payload is intact but belongs to another partition.
    Misrouted,
    /// The offset was delivered before (a re-read).
    Redelivered,
}

/// The verifier's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Distinct messages acknowledged to producers.
    pub acked: u64,
    /// Distinct messages received intact.
    pub received: u64,
    /// Every delivery reported, re-reads and faults included.
    pub deliveries: u64,
    /// Acknowledged messages never received intact.
    pub lost: u64,
    /// Deliveries of a message already received at another offset.
    pub duplicated: u64,
    /// Backward steps of a stream's sequence, in offset order.
    pub reordered: u64,
    /// Deliveries that failed to decode or came from the wrong partition.
    pub corrupted: u64,
    /// Of `corrupted`: intact payloads naming another partition.
    pub misrouted: u64,
    /// Deliveries of an offset delivered before (re-reads; not a fault).
    pub redelivered: u64,
    /// Messages received intact but never acknowledged (not a fault).
    pub received_unacked: u64,
}

impl Summary {
    /// Adds `other`'s counts to these (for per-partition verifiers).
    pub fn merge(&mut self, other: &Summary) {
        self.acked += other.acked;
        self.received += other.received;
        self.deliveries += other.deliveries;
        self.lost += other.lost;
        self.duplicated += other.duplicated;
        self.reordered += other.reordered;
        self.corrupted += other.corrupted;
        self.misrouted += other.misrouted;
        self.redelivered += other.redelivered;
        self.received_unacked += other.received_unacked;
    }

    /// Whether any fault was seen: lost, duplicated, reordered or corrupted.
    pub fn has_faults(&self) -> bool {
        self.lost + self.duplicated + self.reordered + self.corrupted > 0
    }
}

impl std::iter::Sum for Summary {
    fn sum<I: Iterator<Item = Summary>>(iter: I) -> Summary {
        let mut total = Summary::default();
        for s in iter {
            total.merge(&s);
        }
        total
    }
}

/// One (producer, partition) stream.
#[derive(Debug, Default)]
struct Stream {
    acked: RangeSet,
    received: RangeSet,
    /// (offset, sequence) of the intact, non-duplicate record at the highest offset.
    last: Option<(u64, u64)>,
}

/// The verifier of one partition (sans-IO; see the module documentation).
#[derive(Debug)]
pub struct PartitionVerifier {
    partition: u32,
    offsets: RangeSet,
    streams: HashMap<u32, Stream>,
    deliveries: u64,
    duplicated: u64,
    reordered: u64,
    corrupted: u64,
    misrouted: u64,
    redelivered: u64,
}

impl PartitionVerifier {
    /// A verifier for run-wide partition index `partition`.
    pub fn new(partition: u32) -> PartitionVerifier {
        PartitionVerifier {
            partition,
            offsets: RangeSet::new(),
            streams: HashMap::new(),
            deliveries: 0,
            duplicated: 0,
            reordered: 0,
            corrupted: 0,
            misrouted: 0,
            redelivered: 0,
        }
    }

    /// The partition index this verifier covers.
    pub fn partition(&self) -> u32 {
        self.partition
    }

    /// Records that `producer`'s message `sequence` to this partition was acknowledged.
    pub fn acked(&mut self, producer: u32, sequence: u64) {
        self.streams
            .entry(producer)
            .or_default()
            .acked
            .insert(sequence);
    }

    /// Records that `producer`'s messages `sequences` (one batch) were acknowledged.
    pub fn acked_range(&mut self, producer: u32, sequences: Range<u64>) {
        self.streams
            .entry(producer)
            .or_default()
            .acked
            .insert_range(sequences);
    }

    /// Classifies the record a consumer read from this partition at `offset`.
    pub fn received(&mut self, offset: u64, delivery: Delivery) -> Outcome {
        self.deliveries += 1;
        if !self.offsets.insert(offset) {
            self.redelivered += 1;
            return Outcome::Redelivered;
        }
        let fields = match delivery {
            Delivery::Corrupted => {
                self.corrupted += 1;
                return Outcome::Corrupted;
            }
            Delivery::Intact(f) => f,
        };
        if fields.partition != self.partition {
            self.corrupted += 1;
            self.misrouted += 1;
            return Outcome::Misrouted;
        }
        let stream = self.streams.entry(fields.producer).or_default();
        if !stream.received.insert(fields.sequence) {
            self.duplicated += 1;
            return Outcome::Duplicate;
        }
        let seq = fields.sequence;
        let backwards = match stream.last {
            None => false,
            Some((last_offset, last_seq)) if offset > last_offset => {
                stream.last = Some((offset, seq));
                seq < last_seq
            }
            Some((_, last_seq)) => seq > last_seq,
        };
        if stream.last.is_none() {
            stream.last = Some((offset, seq));
        }
        if backwards {
            self.reordered += 1;
            Outcome::Reordered
        } else {
            Outcome::New
        }
    }

    /// Decodes `payload` (read at `offset`) and classifies it.
    pub fn received_payload(&mut self, offset: u64, payload: &[u8]) -> Outcome {
        self.received(offset, decode(payload).into())
    }

    /// Acknowledged messages not received intact (yet): a driver waits for this to drain
    /// before the final [`summary`](Self::summary). Costs one pass over the intervals.
    pub fn outstanding(&self) -> u64 {
        self.streams
            .values()
            .map(|s| s.acked.count_not_in(&s.received))
            .sum()
    }

    /// The counts so far, `lost` counting what is outstanding now.
    pub fn summary(&self) -> Summary {
        let mut s = Summary {
            deliveries: self.deliveries,
            duplicated: self.duplicated,
            reordered: self.reordered,
            corrupted: self.corrupted,
            misrouted: self.misrouted,
            redelivered: self.redelivered,
            ..Summary::default()
        };
        for stream in self.streams.values() {
            s.acked += stream.acked.len();
            s.received += stream.received.len();
            s.lost += stream.acked.count_not_in(&stream.received);
            s.received_unacked += stream.received.count_not_in(&stream.acked);
        }
        s
    }

    /// Intervals held across all range sets (a measure of the memory in use).
    pub fn interval_count(&self) -> usize {
        self.offsets.interval_count()
            + self
                .streams
                .values()
                .map(|s| s.acked.interval_count() + s.received.interval_count())
                .sum::<usize>()
    }
}

/// The verifier of a whole run: one [`PartitionVerifier`] per run-wide partition index.
#[derive(Debug, Default)]
pub struct Verifier {
    partitions: Vec<PartitionVerifier>,
}

impl Verifier {
    /// A verifier for partition indexes `0..partitions` (more are added on first use).
    pub fn new(partitions: u32) -> Verifier {
        Verifier {
            partitions: (0..partitions).map(PartitionVerifier::new).collect(),
        }
    }

    /// The verifier of `partition`, created if needed.
    pub fn partition_mut(&mut self, partition: u32) -> &mut PartitionVerifier {
        let i = partition as usize;
        if i >= self.partitions.len() {
            let from = self.partitions.len() as u32;
            self.partitions
                .extend((from..=partition).map(PartitionVerifier::new));
        }
        &mut self.partitions[i]
    }

    /// Records one acknowledged message.
    pub fn acked(&mut self, producer: u32, partition: u32, sequence: u64) {
        self.partition_mut(partition).acked(producer, sequence);
    }

    /// Records one acknowledged batch: `producer`'s `sequences` to `partition`.
    pub fn acked_range(&mut self, producer: u32, partition: u32, sequences: Range<u64>) {
        self.partition_mut(partition)
            .acked_range(producer, sequences);
    }

    /// Classifies what a consumer read from `partition` at `offset`.
    pub fn received(&mut self, partition: u32, offset: u64, delivery: Delivery) -> Outcome {
        self.partition_mut(partition).received(offset, delivery)
    }

    /// Decodes `payload` (read from `partition` at `offset`) and classifies it.
    pub fn received_payload(&mut self, partition: u32, offset: u64, payload: &[u8]) -> Outcome {
        self.partition_mut(partition)
            .received_payload(offset, payload)
    }

    /// Acknowledged messages not received intact yet, over all partitions.
    pub fn outstanding(&self) -> u64 {
        self.partitions
            .iter()
            .map(PartitionVerifier::outstanding)
            .sum()
    }

    /// The counts over all partitions.
    pub fn summary(&self) -> Summary {
        self.partitions.iter().map(PartitionVerifier::summary).sum()
    }

    /// Intervals held across all partitions (a measure of the memory in use).
    pub fn interval_count(&self) -> usize {
        self.partitions
            .iter()
            .map(PartitionVerifier::interval_count)
            .sum()
    }

    /// Splits into per-partition verifiers (for a driver that locks each separately).
    pub fn into_partitions(self) -> Vec<PartitionVerifier> {
        self.partitions
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::{HEADER_LEN, encode_into};
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn f(producer: u32, partition: u32, sequence: u64) -> Fields {
        Fields {
            producer,
            partition,
            sequence,
            send_ns: sequence * 10,
        }
    }

    #[test]
    fn range_set_merges_and_counts() {
        let mut s = RangeSet::new();
        assert!(s.insert(5));
        assert!(s.insert(7));
        assert!(!s.insert(5));
        assert_eq!(s.interval_count(), 2);
        assert!(s.insert(6));
        assert_eq!(s.interval_count(), 1);
        assert_eq!(s.insert_range(0..10), 7);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![0..10]);
        assert_eq!(s.insert_range(20..30), 10);
        assert_eq!(s.insert_range(12..14), 2);
        assert_eq!(s.insert_range(9..25), 16 - 2 - 1 - 5);
        assert_eq!(s.ranges().collect::<Vec<_>>(), vec![0..30]);
        assert_eq!(s.len(), 30);
        assert_eq!(s.max(), Some(29));
        assert!(s.contains(0) && s.contains(29) && !s.contains(30));
        let mut other = RangeSet::new();
        other.insert_range(5..8);
        other.insert_range(25..40);
        assert_eq!(s.count_not_in(&other), 30 - 3 - 5);
        assert_eq!(other.count_not_in(&s), 10);
        assert_eq!(RangeSet::new().max(), None);
    }

    #[test]
    fn in_order_traffic_takes_constant_memory() {
        let mut v = Verifier::new(2);
        for p in 0..2 {
            for producer in 0..3 {
                v.acked_range(producer, p, 0..100_000);
            }
        }
        // Producers interleaved in each partition, as a log would hold them.
        for p in 0..2u32 {
            for i in 0..300_000u64 {
                let (producer, seq) = ((i % 3) as u32, i / 3);
                assert_eq!(
                    v.received(p, i, Delivery::Intact(f(producer, p, seq))),
                    Outcome::New
                );
            }
        }
        let s = v.summary();
        assert_eq!((s.acked, s.received, s.lost), (600_000, 600_000, 0));
        assert!(!s.has_faults());
        // Per partition: one offset interval, and one acked + one received per stream.
        assert_eq!(v.interval_count(), 2 * (1 + 3 * 2));
    }

    #[test]
    fn classifies_each_fault() {
        let mut v = Verifier::new(2);
        v.acked_range(0, 0, 0..6);
        assert_eq!(v.received(0, 0, Delivery::Intact(f(0, 0, 0))), Outcome::New);
        assert_eq!(v.received(0, 1, Delivery::Intact(f(0, 0, 2))), Outcome::New);
        assert_eq!(
            v.received(0, 2, Delivery::Intact(f(0, 0, 1))),
            Outcome::Reordered
        );
        assert_eq!(
            v.received(0, 3, Delivery::Intact(f(0, 0, 2))),
            Outcome::Duplicate
        );
        assert_eq!(v.received(0, 4, Delivery::Corrupted), Outcome::Corrupted);
        assert_eq!(
            v.received(0, 5, Delivery::Intact(f(0, 1, 3))),
            Outcome::Misrouted
        );
        assert_eq!(
            v.received(0, 2, Delivery::Intact(f(0, 0, 1))),
            Outcome::Redelivered
        );
        assert_eq!(v.received(0, 6, Delivery::Intact(f(0, 0, 5))), Outcome::New);
        // Received but never acknowledged: not a fault.
        assert_eq!(v.received(0, 7, Delivery::Intact(f(0, 0, 9))), Outcome::New);
        assert_eq!(v.outstanding(), 2); // 3 and 4
        let s = v.summary();
        assert_eq!(
            s,
            Summary {
                acked: 6,
                received: 5,
                deliveries: 9,
                lost: 2,
                duplicated: 1,
                reordered: 1,
                corrupted: 2,
                misrouted: 1,
                redelivered: 1,
                received_unacked: 1,
            }
        );
        assert!(s.has_faults());
    }

    #[test]
    fn a_late_lower_offset_is_not_a_false_reordering() {
        let mut v = PartitionVerifier::new(0);
        // Offsets 10 and 11 arrive before offset 5 (two consumers overlapping).
        assert_eq!(v.received(10, Delivery::Intact(f(0, 0, 2))), Outcome::New);
        assert_eq!(v.received(11, Delivery::Intact(f(0, 0, 3))), Outcome::New);
        assert_eq!(v.received(5, Delivery::Intact(f(0, 0, 1))), Outcome::New);
        // But a lower offset carrying a higher sequence is a real inversion.
        assert_eq!(
            v.received(6, Delivery::Intact(f(0, 0, 7))),
            Outcome::Reordered
        );
    }

    #[test]
    fn decodes_payloads() {
        let mut v = Verifier::new(1);
        let mut buf = [0u8; HEADER_LEN + 10];
        encode_into(&mut buf, &f(3, 0, 0)).unwrap();
        v.acked(3, 0, 0);
        assert_eq!(v.received_payload(0, 0, &buf), Outcome::New);
        buf[HEADER_LEN] ^= 0xff;
        assert_eq!(v.received_payload(0, 1, &buf), Outcome::Corrupted);
        assert_eq!(v.received_payload(0, 2, b"short"), Outcome::Corrupted);
        assert_eq!(v.summary().corrupted, 2);
        assert_eq!(v.summary().lost, 0);
        let parts = v.into_partitions();
        assert_eq!(parts.len(), 1);
        assert_eq!(parts[0].partition(), 0);
    }

    /// The same rules with a `HashSet` of everything: the oracle for the compact version.
    #[derive(Default)]
    struct Naive {
        offsets: HashSet<(u32, u64)>,
        received: HashSet<(u32, u32, u64)>,
        acked: HashSet<(u32, u32, u64)>,
        last: HashMap<(u32, u32), (u64, u64)>,
        s: Summary,
    }

    impl Naive {
        fn received(&mut self, partition: u32, offset: u64, d: Delivery) -> Outcome {
            self.s.deliveries += 1;
            if !self.offsets.insert((partition, offset)) {
                self.s.redelivered += 1;
                return Outcome::Redelivered;
            }
            let Delivery::Intact(fl) = d else {
                self.s.corrupted += 1;
                return Outcome::Corrupted;
            };
            if fl.partition != partition {
                self.s.corrupted += 1;
                self.s.misrouted += 1;
                return Outcome::Misrouted;
            }
            if !self.received.insert((fl.producer, partition, fl.sequence)) {
                self.s.duplicated += 1;
                return Outcome::Duplicate;
            }
            let key = (fl.producer, partition);
            let back = match self.last.get(&key).copied() {
                None => {
                    self.last.insert(key, (offset, fl.sequence));
                    false
                }
                Some((lo, ls)) if offset > lo => {
                    self.last.insert(key, (offset, fl.sequence));
                    fl.sequence < ls
                }
                Some((_, ls)) => fl.sequence > ls,
            };
            if back {
                self.s.reordered += 1;
                Outcome::Reordered
            } else {
                Outcome::New
            }
        }

        fn summary(&self) -> Summary {
            let mut s = self.s;
            s.acked = self.acked.len() as u64;
            s.received = self.received.len() as u64;
            s.lost = self.acked.difference(&self.received).count() as u64;
            s.received_unacked = self.received.difference(&self.acked).count() as u64;
            s
        }
    }

    #[derive(Debug, Clone)]
    enum Event {
        Ack(u32, u32, Range<u64>),
        Recv(u32, u64, Delivery),
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (0..3u32, 0..3u32, 0..40u64, 0..8u64).prop_map(|(pr, pa, s, n)| Event::Ack(
                pr,
                pa,
                s..s + n
            )),
            (0..3u32, 0..30u64, 0..3u32, 0..3u32, 0..40u64, 0..10u8).prop_map(
                |(pa, off, pr, fpa, seq, c)| {
                    // Mostly the right partition; sometimes corrupted or misrouted.
                    let d = match c {
                        0 => Delivery::Corrupted,
                        1 => Delivery::Intact(f(pr, fpa, seq)),
                        _ => Delivery::Intact(f(pr, pa, seq)),
                    };
                    Event::Recv(pa, off, d)
                }
            ),
        ]
    }

    /// One planned fate per message of a stream.
    #[derive(Debug, Clone, Copy)]
    enum Fate {
        Keep,
        Drop,
        Corrupt,
        SwapWithNext,
        Duplicate,
    }

    fn fate() -> impl Strategy<Value = Fate> {
        prop_oneof![
            12 => Just(Fate::Keep),
            1 => Just(Fate::Drop),
            1 => Just(Fate::Corrupt),
            1 => Just(Fate::SwapWithNext),
            1 => Just(Fate::Duplicate),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Arbitrary (adversarial) event streams: the compact verifier agrees with the
        /// naive one on every outcome and every count.
        #[test]
        fn matches_the_naive_oracle(events in proptest::collection::vec(event(), 0..300)) {
            let mut v = Verifier::new(3);
            let mut n = Naive::default();
            for e in events {
                match e {
                    Event::Ack(pr, pa, r) => {
                        for s in r.clone() {
                            n.acked.insert((pr, pa, s));
                        }
                        if r.end - r.start == 1 {
                            v.acked(pr, pa, r.start);
                        } else {
                            v.acked_range(pr, pa, r);
                        }
                    }
                    Event::Recv(pa, off, d) => {
                        prop_assert_eq!(v.received(pa, off, d), n.received(pa, off, d));
                    }
                }
            }
            let s = v.summary();
            prop_assert_eq!(s, n.summary());
            prop_assert_eq!(v.outstanding(), s.lost);
        }

        /// Produced streams with planned drops, corruptions, swaps and duplicates,
        /// interleaved into partition logs, some ranges re-read, acks in shuffled
        /// batches: every count comes out exactly as planned.
        #[test]
        fn exact_counts_for_planned_faults(
            plans in proptest::collection::vec(
                (0..2u32, proptest::collection::vec((fate(), any::<bool>()), 1..60)), 1..6),
            interleave_seed: u64,
            rereads in proptest::collection::vec((0..2u32, 0..200u64, 0..20u64), 0..4),
        ) {
            use rand::{SeedableRng, seq::SliceRandom, RngExt};
            let mut rng = rand::rngs::SmallRng::seed_from_u64(interleave_seed);
            let mut expect = Summary::default();
            // Per partition, per stream: the records in stream order, then the
            // duplicates, which are appended at the end of the partition's log.
            let mut streams: Vec<Vec<(u32, Vec<Delivery>)>> = vec![Vec::new(), Vec::new()];
            let mut dups: Vec<Vec<Delivery>> = vec![Vec::new(), Vec::new()];
            let mut v = Verifier::new(2);
            let mut acks = Vec::new();
            for (producer, (partition, fates)) in plans.iter().enumerate() {
                let (producer, p) = (producer as u32, *partition);
                let mut recs = Vec::new();
                let mut i = 0;
                while i < fates.len() {
                    let (fate, acked) = fates[i];
                    let seq = i as u64;
                    if acked {
                        acks.push((producer, p, seq));
                        expect.acked += 1;
                    }
                    let intact = Delivery::Intact(f(producer, p, seq));
                    match fate {
                        Fate::Keep => {
                            recs.push(intact);
                            expect.received += 1;
                        }
                        Fate::Drop => expect.lost += u64::from(acked),
                        Fate::Corrupt => {
                            recs.push(Delivery::Corrupted);
                            expect.corrupted += 1;
                            expect.lost += u64::from(acked);
                        }
                        Fate::Duplicate => {
                            recs.push(intact);
                            dups[p as usize].push(intact);
                            expect.received += 1;
                            expect.duplicated += 1;
                        }
                        Fate::SwapWithNext if i + 1 < fates.len() => {
                            let (_, next_acked) = fates[i + 1];
                            if next_acked {
                                acks.push((producer, p, seq + 1));
                                expect.acked += 1;
                            }
                            recs.push(Delivery::Intact(f(producer, p, seq + 1)));
                            recs.push(intact);
                            expect.received += 2;
                            expect.reordered += 1;
                            i += 1;
                        }
                        Fate::SwapWithNext => {
                            recs.push(intact);
                            expect.received += 1;
                        }
                    }
                    i += 1;
                }
                streams[p as usize].push((producer, recs));
            }
            // Interleave each partition's streams randomly, keeping each stream's order.
            let mut logs: Vec<Vec<Delivery>> = vec![Vec::new(), Vec::new()];
            for p in 0..2 {
                let mut cursors: Vec<(usize, &Vec<Delivery>)> =
                    streams[p].iter().map(|(_, r)| (0, r)).collect();
                loop {
                    let live: Vec<usize> = (0..cursors.len())
                        .filter(|&c| cursors[c].0 < cursors[c].1.len())
                        .collect();
                    if live.is_empty() {
                        break;
                    }
                    let c = live[rng.random_range(0..live.len())];
                    logs[p].push(cursors[c].1[cursors[c].0]);
                    cursors[c].0 += 1;
                }
                logs[p].extend(dups[p].iter().copied());
            }
            // Received but never acknowledged: distinct intact messages minus the acks.
            let acked_set: HashSet<_> = acks.iter().copied().collect();
            let intact: HashSet<_> = logs
                .iter()
                .flatten()
                .filter_map(|d| match d {
                    Delivery::Intact(fl) => Some((fl.producer, fl.partition, fl.sequence)),
                    Delivery::Corrupted => None,
                })
                .collect();
            prop_assert_eq!(intact.len() as u64, expect.received);
            expect.received_unacked = intact.difference(&acked_set).count() as u64;
            // Acks arrive in shuffled batches of consecutive sequences.
            acks.sort_unstable();
            let mut batches: Vec<(u32, u32, Range<u64>)> = Vec::new();
            for (pr, pa, seq) in acks {
                match batches.last_mut() {
                    Some((bpr, bpa, r)) if *bpr == pr && *bpa == pa && r.end == seq && r.end - r.start < 4 => {
                        r.end += 1;
                    }
                    _ => batches.push((pr, pa, seq..seq + 1)),
                }
            }
            batches.shuffle(&mut rng);
            // An acknowledgement repeated (a retried batch) changes nothing.
            if let Some(first) = batches.first().cloned() {
                batches.push(first);
            }
            for (producer, p, seqs) in batches {
                v.acked_range(producer, p, seqs);
            }
            // Deliver each log in offset order, with some ranges re-read afterwards.
            for (p, log) in logs.iter().enumerate() {
                for (off, d) in log.iter().enumerate() {
                    v.received(p as u32, off as u64, *d);
                }
            }
            for (p, from, len) in rereads {
                let log = &logs[p as usize];
                let from = (from as usize).min(log.len());
                let to = (from + len as usize).min(log.len());
                for (off, d) in log.iter().enumerate().take(to).skip(from) {
                    prop_assert_eq!(v.received(p, off as u64, *d), Outcome::Redelivered);
                    expect.redelivered += 1;
                }
            }
            expect.deliveries = logs.iter().map(|l| l.len() as u64).sum::<u64>() + expect.redelivered;
            prop_assert_eq!(v.summary(), expect);
        }
    }
}
