//! Consumer groups: membership, assignment, and durable committed offsets.
//!
//! Each group belongs to one of a fixed number of coordinators (`xxh3(group) mod K`),
//! and each coordinator lives on one shard, so group traffic never takes a lock. A
//! coordinator keeps its groups' committed offsets in an internal log (one batch per
//! commit, fsynced before the commit is acknowledged) and checkpoints it: once the log
//! holds more than [`CHECKPOINT_BYTES`], the offsets are written to a snapshot (fsynced)
//! and the segments it covers are deleted.

mod assign;
mod records;
mod state;

pub use assign::{Assignment, AssignmentStrategy, TopicPartition, assign};
pub use records::{
    CommitRecord, decode_commit, decode_generation, encode_commit_value, encode_generation_value,
};
pub use state::{GroupState, MAX_SESSION_TIMEOUT, MIN_SESSION_TIMEOUT, Membership};

use crate::config::{Durability, PartitionConfig};
use crate::error::{Error, IoContext, Result};
use crate::format::{BatchBuilder, BatchIter, BuilderOptions};
use crate::partition::Partition;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;
use tokio::sync::oneshot;

/// Folder under the data directory holding one internal log per coordinator.
pub const GROUPS_DIR: &str = "__groups";
/// Size of a coordinator's log beyond which it is checkpointed.
pub const CHECKPOINT_BYTES: u64 = 4 << 20;
/// Snapshot file of a coordinator's committed offsets.
pub const OFFSETS_SNAPSHOT: &str = "offsets.snapshot";

/// The coordinator index of `group` among `coordinators`.
pub fn coordinator_for(group: &str, coordinators: u32) -> u32 {
    (xxhash_rust::xxh3::xxh3_64(group.as_bytes()) % u64::from(coordinators.max(1))) as u32
}

/// A group's membership and committed offsets, for listing and describing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupSummary {
    /// Group name.
    pub name: String,
    /// Current generation.
    pub generation: u32,
    /// Assignment strategy.
    pub strategy: AssignmentStrategy,
    /// Member id -> assigned partitions.
    pub members: Assignment,
    /// Committed offsets.
    pub committed: BTreeMap<TopicPartition, u64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Snapshot {
    version: u32,
    covered_offset: u64,
    /// (group, topic, partition, offset).
    offsets: Vec<(String, String, u32, u64)>,
    generations: BTreeMap<String, u32>,
}

/// A commit written to the internal log and waiting to become durable.
struct PendingCommit {
    last_offset: u64,
    group: String,
    generation: u32,
    offsets: Vec<(TopicPartition, u64)>,
    reply: oneshot::Sender<Result<()>>,
}

/// One coordinator: its groups, their offsets and the internal log that keeps them.
pub(crate) struct Coordinator {
    dir: PathBuf,
    log: Partition,
    builder: BatchBuilder,
    groups: HashMap<String, GroupState>,
    offsets: HashMap<String, BTreeMap<TopicPartition, u64>>,
    /// Highest generation each group reached, so generations keep growing across restarts.
    generations: BTreeMap<String, u32>,
    pending: VecDeque<PendingCommit>,
}

impl Coordinator {
    /// Opens the coordinator's log in `dir` and rebuilds the committed offsets.
    pub fn open(dir: &Path, defaults: &PartitionConfig) -> Result<Self> {
        let config = PartitionConfig {
            segment_bytes: crate::config::MIN_SEGMENT_BYTES,
            durability: Durability::Fsync,
            retention_bytes: None,
            retention_age: None,
            segment_age: None,
            ..defaults.clone()
        };
        let log = Partition::open(dir, config)?;
        let mut c = Coordinator {
            dir: dir.to_path_buf(),
            log,
            builder: BatchBuilder::new(BuilderOptions::default()),
            groups: HashMap::new(),
            offsets: HashMap::new(),
            generations: BTreeMap::new(),
            pending: VecDeque::new(),
        };
        c.replay()?;
        Ok(c)
    }

    fn replay(&mut self) -> Result<()> {
        let path = self.dir.join(OFFSETS_SNAPSHOT);
        let mut from = self.log.log_start_offset();
        match std::fs::read(&path) {
            Ok(bytes) => {
                let snap: Snapshot =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                for (group, topic, partition, offset) in snap.offsets {
                    self.offsets
                        .entry(group)
                        .or_default()
                        .insert(TopicPartition { topic, partition }, offset);
                }
                self.generations = snap.generations;
                from = from.max(snap.covered_offset.min(self.log.high_watermark()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io(path, e)),
        }
        let mut scratch = Vec::new();
        while from < self.log.high_watermark() {
            let fetch = self.log.read(from, 1 << 20)?;
            for batch in BatchIter::new(&fetch.bytes) {
                let batch = batch?;
                for record in batch.records(&mut scratch)? {
                    let record = record?;
                    from = record.offset + 1;
                    if let Some(c) = decode_commit(record.key, record.value) {
                        self.apply(&c.group, c.generation, [(c.tp, c.offset)]);
                    } else if let Some((group, generation)) =
                        decode_generation(record.key, record.value)
                    {
                        self.apply(&group, generation, []);
                    } else {
                        tracing::warn!(
                            offset = record.offset,
                            "skipping an undecodable group record"
                        );
                    }
                }
            }
        }
        Ok(())
    }

    fn apply(
        &mut self,
        group: &str,
        generation: u32,
        offsets: impl IntoIterator<Item = (TopicPartition, u64)>,
    ) {
        let map = self.offsets.entry(group.to_owned()).or_default();
        for (tp, offset) in offsets {
            map.insert(tp, offset);
        }
        let g = self.generations.entry(group.to_owned()).or_default();
        *g = (*g).max(generation);
    }

    /// Has the log's completions signal `fd`; false on the synchronous fallback path.
    pub fn register_completion_eventfd(&self, fd: std::os::fd::BorrowedFd<'_>) -> Result<bool> {
        self.log.register_completion_eventfd(fd)
    }

    /// True while commits are being written.
    pub fn is_writing(&self) -> bool {
        self.log.is_writing()
    }

    /// The group's live state, created empty (continuing its generations) if needed.
    pub fn group(&mut self, name: &str) -> &mut GroupState {
        let generation = self.generations.get(name).copied().unwrap_or(0);
        self.groups
            .entry(name.to_owned())
            .or_insert_with(|| GroupState::new(name, generation))
    }

    /// The live state of a group in which `member_id` may be a member; a group without
    /// members is never created here, so unknown names cannot make state grow.
    pub fn member_group(&mut self, name: &str, member_id: &str) -> Result<&mut GroupState> {
        self.groups
            .get_mut(name)
            .ok_or_else(|| Error::UnknownMember(member_id.to_owned()))
    }

    /// Validates and writes a commit; the reply is sent once it is durable.
    pub fn commit(
        &mut self,
        group: &str,
        member: Option<(&str, u32)>,
        offsets: Vec<(TopicPartition, u64)>,
        reply: oneshot::Sender<Result<()>>,
    ) {
        let state = self.group(group);
        if let Err(e) = state.check_commit(member) {
            let _ = reply.send(Err(e));
            return;
        }
        let generation = state.generation();
        if offsets.is_empty() {
            let _ = reply.send(Ok(()));
            return;
        }
        let mut value = Vec::new();
        for (tp, offset) in &offsets {
            value.clear();
            encode_commit_value(&mut value, generation, tp, *offset);
            if let Err(e) = self
                .builder
                .push(0, Some(group.as_bytes()), Some(&value), &[])
            {
                let _ = self.builder.finish();
                let _ = reply.send(Err(e.into()));
                return;
            }
        }
        let batch = match self.builder.finish() {
            Ok(b) => b,
            Err(e) => {
                let _ = reply.send(Err(e.into()));
                return;
            }
        };
        match self.log.submit(batch) {
            Ok(appended) => self.pending.push_back(PendingCommit {
                last_offset: appended.last_offset,
                group: group.to_owned(),
                generation,
                offsets,
                reply,
            }),
            Err(e) => {
                self.fail_dropped(&e);
                let _ = reply.send(Err(e));
            }
        }
    }

    fn fail_dropped(&mut self, err: &Error) {
        let next = self.log.next_offset();
        while self.pending.back().is_some_and(|p| p.last_offset >= next) {
            let p = self.pending.pop_back().expect("back exists");
            let _ = p.reply.send(Err(Error::AppendFailed(err.to_string())));
        }
    }

    /// The committed offsets of `partitions` (None where nothing was committed).
    pub fn committed(&self, group: &str, partitions: &[TopicPartition]) -> Vec<Option<u64>> {
        let map = self.offsets.get(group);
        partitions
            .iter()
            .map(|tp| map.and_then(|m| m.get(tp)).copied())
            .collect()
    }

    /// A group's summary, if the coordinator knows it.
    pub fn describe(&self, group: &str) -> Option<GroupSummary> {
        let state = self.groups.get(group);
        let committed = self.offsets.get(group);
        if state.is_none() && committed.is_none() {
            return None;
        }
        Some(GroupSummary {
            name: group.to_owned(),
            generation: state.map_or_else(
                || self.generations.get(group).copied().unwrap_or(0),
                GroupState::generation,
            ),
            strategy: state.map(GroupState::strategy).unwrap_or_default(),
            members: state.map(|s| s.assignment().clone()).unwrap_or_default(),
            committed: committed.cloned().unwrap_or_default(),
        })
    }

    /// Names of every group this coordinator knows.
    pub fn group_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .groups
            .keys()
            .chain(self.offsets.keys())
            .cloned()
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Advances I/O, acknowledges durable commits, expires members, checkpoints.
    ///
    /// Returns whether anything happened and the next member-expiry deadline.
    pub fn tick(&mut self, now: Instant) -> (bool, Option<Instant>) {
        let mut progressed = false;
        if self.log.is_writing()
            && let Err(e) = self.log.poll()
        {
            self.fail_dropped(&e);
            progressed = true;
        }
        let hw = self.log.high_watermark();
        while self.pending.front().is_some_and(|p| p.last_offset < hw) {
            let p = self.pending.pop_front().expect("front exists");
            self.apply(&p.group, p.generation, p.offsets);
            let _ = p.reply.send(Ok(()));
            progressed = true;
        }
        let mut next = None;
        let mut value = Vec::new();
        for g in self.groups.values_mut() {
            let (expired, deadline) = g.expire(now);
            progressed |= expired > 0;
            if let Some(d) = deadline {
                next = Some(next.map_or(d, |n: Instant| n.min(d)));
            }
            if self.generations.get(g.name()) != Some(&g.generation()) {
                self.generations.insert(g.name().to_owned(), g.generation());
                // Record the new generation so that it keeps growing across restarts
                // (fencing itself rests on member ids, which are never reused).
                value.clear();
                encode_generation_value(&mut value, g.generation());
                let written = self
                    .builder
                    .push(0, Some(g.name().as_bytes()), Some(&value), &[])
                    .map_err(Error::from)
                    .and_then(|()| Ok(self.builder.finish()?))
                    .and_then(|batch| self.log.submit(batch));
                if let Err(e) = written {
                    tracing::warn!(group = %g.name(), error = %e, "could not record a group generation");
                }
            }
        }
        // Groups without members keep only their generation counter and offsets.
        self.groups.retain(|_, g| !g.is_empty());
        if self.pending.is_empty() && self.log.size_bytes() > CHECKPOINT_BYTES {
            if let Err(e) = self.checkpoint() {
                tracing::warn!(dir = %self.dir.display(), error = %e, "offset checkpoint failed");
            }
        }
        (progressed, next)
    }

    /// Writes every committed offset to a durable snapshot, then deletes the log
    /// segments it covers.
    pub fn checkpoint(&mut self) -> Result<()> {
        let covered = self.log.flush()?;
        let snap = Snapshot {
            version: 1,
            covered_offset: covered,
            offsets: self
                .offsets
                .iter()
                .flat_map(|(g, m)| {
                    m.iter()
                        .map(move |(tp, o)| (g.clone(), tp.topic.clone(), tp.partition, *o))
                })
                .collect(),
            generations: self.generations.clone(),
        };
        let path = self.dir.join(OFFSETS_SNAPSHOT);
        let tmp = self.dir.join(format!("{OFFSETS_SNAPSHOT}.tmp"));
        let bytes = serde_json::to_vec(&snap).expect("snapshot serializes");
        let mut f = std::fs::File::create(&tmp).at(&tmp)?;
        f.write_all(&bytes).at(&tmp)?;
        f.sync_all().at(&tmp)?;
        std::fs::rename(&tmp, &path).at(&path)?;
        crate::segment::sync_dir(&self.dir)?;
        self.log.roll()?;
        self.log.delete_before(covered)?;
        Ok(())
    }

    /// Fails pending commits if the log cannot flush, then closes it cleanly.
    pub fn close(mut self) -> Result<()> {
        if let Err(e) = self.log.flush() {
            self.fail_dropped(&e);
        }
        let _ = self.tick(Instant::now());
        self.log.close()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::IoBackend;

    fn commit(c: &mut Coordinator, group: &str, tp: &TopicPartition, offset: u64) {
        commit_all(c, group, vec![(tp.clone(), offset)]);
    }

    /// Commits `offsets` and drives the coordinator until the commit is answered.
    fn commit_all(c: &mut Coordinator, group: &str, offsets: Vec<(TopicPartition, u64)>) {
        let (tx, mut rx) = oneshot::channel();
        c.commit(group, None, offsets, tx);
        loop {
            c.tick(Instant::now());
            match rx.try_recv() {
                Ok(r) => return r.unwrap(),
                Err(oneshot::error::TryRecvError::Empty) => {
                    let _ = c.log.wait();
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn checkpoint_deletes_covered_segments_and_reopen_replays_the_tail() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = PartitionConfig {
            io_backend: IoBackend::Fallback,
            ..PartitionConfig::default()
        };
        let tp = |p| TopicPartition {
            topic: "t".into(),
            partition: p,
        };
        {
            let mut c = Coordinator::open(dir.path(), &defaults).unwrap();
            for i in 0..3 {
                commit(&mut c, "g", &tp(i), u64::from(i) * 10);
            }
            commit(&mut c, "g", &tp(0), 99);
            c.checkpoint().unwrap();
            assert!(c.log.log_start_offset() >= 4, "covered segments are gone");
            assert!(dir.path().join(OFFSETS_SNAPSHOT).exists());
            // Committed after the snapshot: only in the log's tail.
            commit(&mut c, "g", &tp(2), 1234);
            c.close().unwrap();
        }
        let c = Coordinator::open(dir.path(), &defaults).unwrap();
        assert_eq!(
            c.committed("g", &[tp(0), tp(1), tp(2), tp(3)]),
            vec![Some(99), Some(10), Some(1234), None]
        );
        assert_eq!(c.committed("other", &[tp(0)]), vec![None]);
    }

    #[test]
    fn a_log_past_the_checkpoint_size_is_checkpointed_by_itself() {
        let dir = tempfile::tempdir().unwrap();
        let defaults = PartitionConfig {
            io_backend: IoBackend::Fallback,
            ..PartitionConfig::default()
        };
        let topic = "t".repeat(200);
        let tps: Vec<TopicPartition> = (0..2000)
            .map(|p| TopicPartition {
                topic: topic.clone(),
                partition: p,
            })
            .collect();
        let last = {
            let mut c = Coordinator::open(dir.path(), &defaults).unwrap();
            let mut round = 0u64;
            // Large commits (2000 offsets each) until a tick finds the log past the size.
            while !dir.path().join(OFFSETS_SNAPSHOT).exists() {
                assert!(round < 200, "no checkpoint after {round} commits");
                round += 1;
                commit_all(
                    &mut c,
                    "g",
                    tps.iter().map(|tp| (tp.clone(), round)).collect(),
                );
            }
            assert!(
                c.log.size_bytes() <= CHECKPOINT_BYTES,
                "covered segments deleted"
            );
            assert!(c.log.log_start_offset() > 0);
            assert!(round > 1, "one commit alone stays under the size");
            c.close().unwrap();
            round
        };
        let c = Coordinator::open(dir.path(), &defaults).unwrap();
        assert_eq!(c.committed("g", &tps), vec![Some(last); tps.len()]);
    }

    #[test]
    fn commits_for_a_group_with_members_need_the_current_generation() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Coordinator::open(dir.path(), &PartitionConfig::default()).unwrap();
        let now = Instant::now();
        let parts = BTreeMap::from([("t".to_string(), 1)]);
        let m = c
            .group("g")
            .join(
                None,
                vec!["t".into()],
                AssignmentStrategy::Range,
                std::time::Duration::from_secs(5),
                parts,
                now,
            )
            .unwrap();
        let (tx, mut rx) = oneshot::channel();
        let tp = TopicPartition {
            topic: "t".into(),
            partition: 0,
        };
        c.commit(
            "g",
            Some((&m.member_id, m.generation + 1)),
            vec![(tp, 1)],
            tx,
        );
        assert!(matches!(
            rx.try_recv().unwrap(),
            Err(Error::StaleGeneration { .. })
        ));
    }
}
