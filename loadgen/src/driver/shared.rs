//! State shared by the tasks of one run: topic names, run-wide partition indexes, and
//! one verifier per partition (each behind its own lock, taken once per acknowledged
//! range or fetched batch, never per message).

use super::pace::Pace;
use crate::verify::{PartitionVerifier, Summary};
use std::sync::{Mutex, MutexGuard};

/// The topics of a run and their verifiers.
#[derive(Debug)]
pub struct Shared {
    /// Topic names; topic `i` holds run-wide partitions `i * partitions ..`.
    pub topics: Vec<String>,
    /// Partitions per topic.
    pub partitions: u32,
    /// Closed-loop pacing of the producers by what the consumers took.
    pub pace: Pace,
    verifiers: Vec<Mutex<PartitionVerifier>>,
}

impl Shared {
    /// `topics` of `partitions` partitions each; producers hold back while more than
    /// `max_unconsumed` messages are unconsumed (0: never).
    pub fn new(topics: Vec<String>, partitions: u32, max_unconsumed: u64) -> Shared {
        let total = topics.len() as u32 * partitions;
        Shared {
            pace: Pace::new(max_unconsumed),
            verifiers: (0..total)
                .map(|p| Mutex::new(PartitionVerifier::new(p)))
                .collect(),
            topics,
            partitions,
        }
    }

    /// Partitions over all topics.
    pub fn total_partitions(&self) -> u32 {
        self.verifiers.len() as u32
    }

    /// The run-wide index of `partition` of topic `topic_index`.
    pub fn run_partition(&self, topic_index: usize, partition: u32) -> u32 {
        topic_index as u32 * self.partitions + partition
    }

    /// The index of the topic called `name`.
    pub fn topic_index(&self, name: &str) -> Option<usize> {
        self.topics.iter().position(|t| t == name)
    }

    /// The verifier of run-wide partition `p`, locked.
    pub fn verifier(&self, p: u32) -> MutexGuard<'_, PartitionVerifier> {
        // A task that panicked holding the lock leaves counts that are still usable.
        self.verifiers[p as usize]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// The verifiers' counts added up.
    pub fn summary(&self) -> Summary {
        (0..self.total_partitions())
            .map(|p| self.verifier(p).summary())
            .sum()
    }
}
