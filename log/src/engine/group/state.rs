//! One consumer group's membership and generation, as a pure state machine.
//!
//! Time is passed in; nothing here sleeps or does I/O. Assignment is computed by the
//! coordinator (server side) whenever membership changes, and each change bumps the
//! generation, which fences commits from members that have not caught up.

use super::assign::{Assignment, AssignmentStrategy, TopicPartition, assign};
use crate::error::{Error, Result};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// Shortest session timeout a member may ask for.
pub const MIN_SESSION_TIMEOUT: Duration = Duration::from_millis(100);
/// Longest session timeout a member may ask for.
pub const MAX_SESSION_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What a member learns when it joins or heartbeats.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The member's id (assigned by the coordinator on first join).
    pub member_id: String,
    /// Current generation of the group.
    pub generation: u32,
    /// Partitions this member owns in that generation.
    pub assignment: Vec<TopicPartition>,
}

#[derive(Debug, Clone)]
struct Member {
    topics: Vec<String>,
    session_timeout: Duration,
    last_seen: Instant,
}

/// A consumer group's live state.
#[derive(Debug, Clone)]
pub struct GroupState {
    name: String,
    generation: u32,
    strategy: AssignmentStrategy,
    members: BTreeMap<String, Member>,
    partitions: BTreeMap<String, u32>,
    assignment: Assignment,
}

impl GroupState {
    /// An empty group whose next generation will be `generation + 1`.
    pub fn new(name: &str, generation: u32) -> Self {
        GroupState {
            name: name.to_owned(),
            generation,
            strategy: AssignmentStrategy::default(),
            members: BTreeMap::new(),
            partitions: BTreeMap::new(),
            assignment: Assignment::new(),
        }
    }

    /// Group name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Current generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// Strategy in force (set by the first member).
    pub fn strategy(&self) -> AssignmentStrategy {
        self.strategy
    }

    /// Member ids with their assignments.
    pub fn assignment(&self) -> &Assignment {
        &self.assignment
    }

    /// True when the group has no member.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    fn membership(&self, member_id: &str) -> Membership {
        Membership {
            member_id: member_id.to_owned(),
            generation: self.generation,
            assignment: self.assignment.get(member_id).cloned().unwrap_or_default(),
        }
    }

    fn rebalance(&mut self) {
        self.generation += 1;
        let subscriptions = self
            .members
            .iter()
            .map(|(id, m)| (id.clone(), m.topics.clone()))
            .collect();
        self.assignment = assign(
            self.strategy,
            &subscriptions,
            &self.partitions,
            &self.assignment,
        );
    }

    /// Adds a member (or updates one that re-joins) and rebalances if anything changed.
    ///
    /// `partitions` gives the partition count of the subscribed topics.
    pub fn join(
        &mut self,
        member_id: Option<&str>,
        topics: Vec<String>,
        strategy: AssignmentStrategy,
        session_timeout: Duration,
        partitions: BTreeMap<String, u32>,
        now: Instant,
    ) -> Result<Membership> {
        if !(MIN_SESSION_TIMEOUT..=MAX_SESSION_TIMEOUT).contains(&session_timeout) {
            return Err(Error::InvalidConfig(format!(
                "session timeout {session_timeout:?} outside [{MIN_SESSION_TIMEOUT:?}, {MAX_SESSION_TIMEOUT:?}]"
            )));
        }
        if topics.is_empty() {
            return Err(Error::InvalidConfig(
                "a member must subscribe to a topic".into(),
            ));
        }
        if self.members.is_empty() {
            self.strategy = strategy;
        }
        let id = match member_id {
            Some(id) if self.members.contains_key(id) => id.to_owned(),
            Some(id) => return Err(Error::UnknownMember(id.to_owned())),
            // Random ids: a member from before a restart can never pass for a new one.
            None => format!("{}-{}", self.name, uuid::Uuid::new_v4()),
        };
        let mut topics = topics;
        topics.sort();
        topics.dedup();
        let changed = self.members.get(&id).is_none_or(|m| m.topics != topics)
            || partitions
                .iter()
                .any(|(t, n)| self.partitions.get(t) != Some(n));
        self.partitions.extend(partitions);
        self.members.insert(
            id.clone(),
            Member {
                topics,
                session_timeout,
                last_seen: now,
            },
        );
        if changed {
            self.rebalance();
        }
        Ok(self.membership(&id))
    }

    /// Records a member's heartbeat and tells it the current generation and assignment.
    pub fn heartbeat(&mut self, member_id: &str, now: Instant) -> Result<Membership> {
        let m = self
            .members
            .get_mut(member_id)
            .ok_or_else(|| Error::UnknownMember(member_id.to_owned()))?;
        m.last_seen = now;
        Ok(self.membership(member_id))
    }

    /// Removes a member and rebalances the others.
    pub fn leave(&mut self, member_id: &str) -> Result<()> {
        self.members
            .remove(member_id)
            .ok_or_else(|| Error::UnknownMember(member_id.to_owned()))?;
        self.rebalance();
        Ok(())
    }

    /// Expires members whose session timed out; returns how many, and the next expiry.
    pub fn expire(&mut self, now: Instant) -> (usize, Option<Instant>) {
        let before = self.members.len();
        self.members
            .retain(|_, m| now.saturating_duration_since(m.last_seen) < m.session_timeout);
        let expired = before - self.members.len();
        if expired > 0 {
            tracing::info!(group = %self.name, expired, "expired consumer group members");
            self.rebalance();
        }
        let next = self
            .members
            .values()
            .map(|m| m.last_seen + m.session_timeout)
            .min();
        (expired, next)
    }

    /// Checks that a commit may be applied: from a current member in the current
    /// generation, or with no member at all when the group is empty (manual offsets).
    pub fn check_commit(&self, member: Option<(&str, u32)>) -> Result<()> {
        match member {
            None if self.members.is_empty() => Ok(()),
            None => Err(Error::StaleGeneration {
                group: self.name.clone(),
                generation: None,
                current: self.generation,
            }),
            Some((id, _)) if !self.members.contains_key(id) => {
                Err(Error::UnknownMember(id.to_owned()))
            }
            Some((_, generation)) if generation != self.generation => Err(Error::StaleGeneration {
                group: self.name.clone(),
                generation: Some(generation),
                current: self.generation,
            }),
            Some(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts() -> BTreeMap<String, u32> {
        BTreeMap::from([("t".to_string(), 4)])
    }

    #[test]
    fn joins_rebalance_and_fence_stale_generations() {
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        let mut g = GroupState::new("g", 0);
        let a = g
            .join(
                None,
                vec!["t".into()],
                AssignmentStrategy::Range,
                timeout,
                parts(),
                t0,
            )
            .unwrap();
        assert_eq!((a.generation, a.assignment.len()), (1, 4));
        g.check_commit(Some((&a.member_id, 1))).unwrap();
        let b = g
            .join(
                None,
                vec!["t".into()],
                AssignmentStrategy::Range,
                timeout,
                parts(),
                t0,
            )
            .unwrap();
        assert_eq!(b.generation, 2);
        assert_eq!(b.assignment.len(), 2);
        // A's generation-1 commit is now fenced; it learns the new one by heartbeat.
        assert!(matches!(
            g.check_commit(Some((&a.member_id, 1))),
            Err(Error::StaleGeneration { .. })
        ));
        let hb = g.heartbeat(&a.member_id, t0).unwrap();
        assert_eq!((hb.generation, hb.assignment.len()), (2, 2));
        g.check_commit(Some((&a.member_id, 2))).unwrap();
        // Commits without membership are refused while the group has members.
        assert!(g.check_commit(None).is_err());
        // Re-joining unchanged keeps the generation.
        let again = g
            .join(
                Some(&a.member_id),
                vec!["t".into()],
                AssignmentStrategy::Range,
                timeout,
                parts(),
                t0,
            )
            .unwrap();
        assert_eq!(again.generation, 2);
    }

    #[test]
    fn silent_members_expire_and_their_partitions_move() {
        let t0 = Instant::now();
        let mut g = GroupState::new("g", 7);
        let a = g
            .join(
                None,
                vec!["t".into()],
                AssignmentStrategy::Sticky,
                Duration::from_secs(1),
                parts(),
                t0,
            )
            .unwrap();
        let b = g
            .join(
                None,
                vec!["t".into()],
                AssignmentStrategy::Sticky,
                Duration::from_secs(5),
                parts(),
                t0,
            )
            .unwrap();
        assert_eq!(b.generation, 9);
        let (expired, next) = g.expire(t0 + Duration::from_millis(500));
        assert_eq!((expired, next), (0, Some(t0 + Duration::from_secs(1))));
        g.heartbeat(&b.member_id, t0 + Duration::from_secs(2))
            .unwrap();
        let (expired, _) = g.expire(t0 + Duration::from_secs(2));
        assert_eq!(expired, 1);
        assert!(matches!(
            g.heartbeat(&a.member_id, t0),
            Err(Error::UnknownMember(_))
        ));
        let hb = g
            .heartbeat(&b.member_id, t0 + Duration::from_secs(2))
            .unwrap();
        assert_eq!((hb.generation, hb.assignment.len()), (10, 4));
        g.leave(&b.member_id).unwrap();
        assert!(g.is_empty());
        g.check_commit(None).unwrap();
    }

    #[test]
    fn bad_joins_are_refused() {
        let mut g = GroupState::new("g", 0);
        let now = Instant::now();
        let bad_timeout = g.join(
            None,
            vec!["t".into()],
            AssignmentStrategy::Range,
            Duration::ZERO,
            parts(),
            now,
        );
        assert!(matches!(bad_timeout, Err(Error::InvalidConfig(_))));
        let unknown = g.join(
            Some("ghost"),
            vec!["t".into()],
            AssignmentStrategy::Range,
            Duration::from_secs(1),
            parts(),
            now,
        );
        assert!(matches!(unknown, Err(Error::UnknownMember(_))));
        assert!(
            g.join(
                None,
                vec![],
                AssignmentStrategy::Range,
                Duration::from_secs(1),
                parts(),
                now
            )
            .is_err()
        );
    }
}
