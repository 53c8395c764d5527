//! Idempotent producer state: per producer, its epoch and its last few batches, so a
//! retried batch is acknowledged with its original offsets instead of written twice.
//!
//! Pure: fed batch headers and offsets, it decides; the partition does the I/O.

use crate::error::{Error, Result};
use crate::format::{BatchHeader, NO_PRODUCER_ID};
use crate::partition::Appended;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// Batches remembered per producer (Kafka keeps five in flight).
pub const RECENT_BATCHES: usize = 5;
/// Version of the snapshot encoding.
pub const SNAPSHOT_VERSION: u32 = 1;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSeq {
    /// Sequence of the first record.
    pub first_seq: i32,
    /// Sequence of the last record.
    pub last_seq: i32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Offset of the last record.
    pub last_offset: u64,
}

/// What a producer last did on this partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerEntry {
    /// Current epoch; batches from older epochs are fenced.
    pub epoch: u16,
    /// The last batches, oldest first (at most [`RECENT_BATCHES`]).
    pub recent: VecDeque<BatchSeq>,
}

/// Outcome of checking a batch against the producer's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqCheck {
    /// No idempotence fields, or the next batch in sequence: append it.
    Append,
    /// A retry of a batch already appended at these offsets: do not write it again.
    Duplicate(Appended),
}

fn last_seq(first: i32, count: u32) -> i32 {
    // Sequences wrap from i32::MAX to 0, as in Kafka.
    ((i64::from(first) + i64::from(count) - 1) % (i64::from(i32::MAX) + 1)) as i32
}

fn next_seq(last: i32) -> i32 {
    if last == i32::MAX { 0 } else { last + 1 }
}

/// Producer state of one partition.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProducerTable {
    producers: HashMap<u64, ProducerEntry>,
}

impl ProducerTable {
    /// Number of producers known.
    pub fn len(&self) -> usize {
        self.producers.len()
    }

    /// True when no producer is known.
    pub fn is_empty(&self) -> bool {
        self.producers.is_empty()
    }

    /// A producer's state.
    pub fn get(&self, producer_id: u64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Decides whether the batch `h` is new, a duplicate, or out of sequence.
    pub fn check(&self, h: &BatchHeader) -> Result<SeqCheck> {
        if h.producer_id == NO_PRODUCER_ID {
            return Ok(SeqCheck::Append);
        }
        if h.base_sequence < 0 {
            return Err(Error::InvalidSequence {
                producer_id: h.producer_id,
                reason: "an idempotent batch needs a base sequence >= 0",
            });
        }
        let Some(entry) = self.producers.get(&h.producer_id) else {
            // Unknown producer (new, or its batches were all retained away): accept.
            return Ok(SeqCheck::Append);
        };
        if h.producer_epoch < entry.epoch {
            return Err(Error::ProducerFenced {
                producer_id: h.producer_id,
                epoch: h.producer_epoch,
                current_epoch: entry.epoch,
            });
        }
        if h.producer_epoch > entry.epoch {
            return if h.base_sequence == 0 {
                Ok(SeqCheck::Append)
            } else {
                Err(Error::OutOfOrderSequence {
                    producer_id: h.producer_id,
                    expected: 0,
                    received: h.base_sequence,
                })
            };
        }
        let last = last_seq(h.base_sequence, h.record_count);
        if let Some(b) = entry
            .recent
            .iter()
            .find(|b| b.first_seq == h.base_sequence && b.last_seq == last)
        {
            return Ok(SeqCheck::Duplicate(Appended {
                base_offset: b.base_offset,
                last_offset: b.last_offset,
            }));
        }
        let expected = entry.recent.back().map_or(0, |b| next_seq(b.last_seq));
        if h.base_sequence == expected {
            Ok(SeqCheck::Append)
        } else {
            Err(Error::OutOfOrderSequence {
                producer_id: h.producer_id,
                expected,
                received: h.base_sequence,
            })
        }
    }

    /// Records that the batch `h` was appended at `appended`.
    pub fn record(&mut self, h: &BatchHeader, appended: Appended) {
        if h.producer_id == NO_PRODUCER_ID || h.base_sequence < 0 {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                recent: VecDeque::with_capacity(RECENT_BATCHES),
            });
        if h.producer_epoch > entry.epoch {
            entry.epoch = h.producer_epoch;
            entry.recent.clear();
        }
        if entry.recent.len() == RECENT_BATCHES {
            entry.recent.pop_front();
        }
        entry.recent.push_back(BatchSeq {
            first_seq: h.base_sequence,
            last_seq: last_seq(h.base_sequence, h.record_count),
            base_offset: appended.base_offset,
            last_offset: appended.last_offset,
        });
    }

    /// Forgets batches at or past `next_offset` (they were dropped by a failed write).
    pub fn truncate(&mut self, next_offset: u64) {
        self.producers.retain(|_, e| {
            while e
                .recent
                .back()
                .is_some_and(|b| b.base_offset >= next_offset)
            {
                e.recent.pop_back();
            }
            !e.recent.is_empty()
        });
    }

    /// Encodes the table with the offset it is complete up to.
    pub fn encode_snapshot(&self, covered_offset: u64) -> Vec<u8> {
        let snap = Snapshot {
            version: SNAPSHOT_VERSION,
            covered_offset,
            table: self.clone(),
        };
        serde_json::to_vec(&snap).expect("producer table serializes")
    }

    /// Decodes a snapshot into (table, covered offset); `None` if it is unreadable.
    pub fn decode_snapshot(bytes: &[u8]) -> Option<(Self, u64)> {
        let snap: Snapshot = serde_json::from_slice(bytes).ok()?;
        (snap.version == SNAPSHOT_VERSION).then_some((snap.table, snap.covered_offset))
    }
}

#[derive(Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    covered_offset: u64,
    table: ProducerTable,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(pid: u64, epoch: u16, seq: i32, count: u32) -> BatchHeader {
        BatchHeader {
            base_offset: 0,
            crc: 0,
            length: 100,
            magic: 1,
            attributes: 0,
            producer_epoch: epoch,
            last_offset_delta: count - 1,
            base_timestamp: 0,
            max_timestamp: 0,
            producer_id: pid,
            base_sequence: seq,
            record_count: count,
        }
    }

    fn at(base: u64, count: u32) -> Appended {
        Appended {
            base_offset: base,
            last_offset: base + u64::from(count) - 1,
        }
    }

    #[test]
    fn retries_are_duplicates_and_gaps_are_rejected() {
        let mut t = ProducerTable::default();
        let b0 = header(7, 0, 0, 3);
        assert_eq!(t.check(&b0).unwrap(), SeqCheck::Append);
        t.record(&b0, at(100, 3));
        let b1 = header(7, 0, 3, 2);
        assert_eq!(t.check(&b1).unwrap(), SeqCheck::Append);
        t.record(&b1, at(103, 2));
        // Retrying either batch returns its original offsets.
        assert_eq!(t.check(&b0).unwrap(), SeqCheck::Duplicate(at(100, 3)));
        assert_eq!(t.check(&b1).unwrap(), SeqCheck::Duplicate(at(103, 2)));
        // A gap names the expected sequence.
        let err = t.check(&header(7, 0, 9, 1)).unwrap_err();
        assert!(
            matches!(
                err,
                Error::OutOfOrderSequence {
                    expected: 5,
                    received: 9,
                    ..
                }
            ),
            "{err}"
        );
        // Non-idempotent batches are never checked.
        assert_eq!(
            t.check(&header(NO_PRODUCER_ID, 0, -1, 1)).unwrap(),
            SeqCheck::Append
        );
    }

    #[test]
    fn epochs_fence_older_producers() {
        let mut t = ProducerTable::default();
        let b = header(1, 2, 0, 1);
        t.record(&b, at(0, 1));
        assert!(matches!(
            t.check(&header(1, 1, 1, 1)),
            Err(Error::ProducerFenced {
                current_epoch: 2,
                ..
            })
        ));
        // A new epoch restarts at sequence 0.
        assert_eq!(t.check(&header(1, 3, 0, 1)).unwrap(), SeqCheck::Append);
        assert!(t.check(&header(1, 3, 4, 1)).is_err());
        t.record(&header(1, 3, 0, 1), at(1, 1));
        assert_eq!(t.get(1).unwrap().epoch, 3);
        assert_eq!(t.get(1).unwrap().recent.len(), 1);
    }

    #[test]
    fn sequences_wrap_and_only_recent_batches_are_remembered() {
        let mut t = ProducerTable::default();
        let b = header(5, 0, i32::MAX - 1, 3);
        t.record(&b, at(0, 3));
        // Sequences MAX-1, MAX, 0: the next one is 1.
        assert_eq!(t.get(5).unwrap().recent[0].last_seq, 0);
        assert!(t.check(&header(5, 0, 2, 1)).is_err());
        assert_eq!(t.check(&header(5, 0, 1, 1)).unwrap(), SeqCheck::Append);
        for i in 0..10u32 {
            t.record(&header(5, 0, 1 + i as i32, 1), at(3 + u64::from(i), 1));
        }
        assert_eq!(t.get(5).unwrap().recent.len(), RECENT_BATCHES);
    }

    #[test]
    fn truncate_forgets_dropped_batches_and_snapshots_round_trip() {
        let mut t = ProducerTable::default();
        t.record(&header(1, 0, 0, 1), at(0, 1));
        t.record(&header(1, 0, 1, 1), at(1, 1));
        t.record(&header(2, 0, 0, 1), at(2, 1));
        t.truncate(1);
        assert_eq!(t.get(1).unwrap().recent.len(), 1);
        assert!(t.get(2).is_none());
        let bytes = t.encode_snapshot(1);
        assert_eq!(ProducerTable::decode_snapshot(&bytes), Some((t, 1)));
        assert_eq!(ProducerTable::decode_snapshot(b"junk"), None);
    }
}
