//! Partition assignment strategies for consumer groups (pure functions).

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// A partition of a topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

/// How a group spreads partitions over its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AssignmentStrategy {
    /// Per topic, contiguous ranges of partitions to members in id order.
    #[default]
    Range,
    /// All partitions dealt to members in turn.
    RoundRobin,
    /// Keeps each member's previous partitions where balance allows, then evens out.
    Sticky,
}

/// Member id -> partitions.
pub type Assignment = BTreeMap<String, Vec<TopicPartition>>;

/// Assigns the partitions of the topics members subscribe to.
///
/// `subscriptions` maps member id to topics; `partitions` gives each topic's partition
/// count (topics missing from it are skipped); `previous` is used by the sticky strategy.
/// Every subscribed partition goes to exactly one member subscribed to its topic.
pub fn assign(
    strategy: AssignmentStrategy,
    subscriptions: &BTreeMap<String, Vec<String>>,
    partitions: &BTreeMap<String, u32>,
    previous: &Assignment,
) -> Assignment {
    let mut out: Assignment = subscriptions
        .keys()
        .map(|m| (m.clone(), Vec::new()))
        .collect();
    let subscribers = |topic: &str| -> Vec<&String> {
        subscriptions
            .iter()
            .filter(|(_, topics)| topics.iter().any(|t| t == topic))
            .map(|(m, _)| m)
            .collect()
    };
    let topics: BTreeSet<&String> = subscriptions.values().flatten().collect();
    match strategy {
        AssignmentStrategy::Range => {
            for topic in topics {
                let Some(&n) = partitions.get(topic) else {
                    continue;
                };
                let members = subscribers(topic);
                let m = members.len() as u32;
                let (per, extra) = (n / m, n % m);
                let mut next = 0;
                for (i, member) in members.into_iter().enumerate() {
                    let take = per + u32::from((i as u32) < extra);
                    let list = out.get_mut(member).expect("member present");
                    list.extend((next..next + take).map(|p| TopicPartition {
                        topic: topic.clone(),
                        partition: p,
                    }));
                    next += take;
                }
            }
        }
        AssignmentStrategy::RoundRobin => {
            let members: Vec<&String> = subscriptions.keys().collect();
            let mut turn = 0usize;
            for topic in topics {
                let Some(&n) = partitions.get(topic) else {
                    continue;
                };
                for p in 0..n {
                    // Next member in turn that subscribes to this topic.
                    let member = (0..members.len())
                        .map(|k| members[(turn + k) % members.len()])
                        .find(|m| subscriptions[*m].iter().any(|t| t == topic))
                        .expect("a topic in the list has a subscriber");
                    turn = members.iter().position(|m| *m == member).expect("member") + 1;
                    out.get_mut(member)
                        .expect("member present")
                        .push(TopicPartition {
                            topic: topic.clone(),
                            partition: p,
                        });
                }
            }
        }
        AssignmentStrategy::Sticky => {
            let all: Vec<TopicPartition> = topics
                .iter()
                .filter_map(|t| partitions.get(*t).map(|&n| (t, n)))
                .flat_map(|(t, n)| {
                    (0..n).map(move |p| TopicPartition {
                        topic: (*t).clone(),
                        partition: p,
                    })
                })
                .collect();
            let total = all.len();
            let members = subscriptions.len().max(1);
            let quota = total.div_ceil(members);
            let valid: BTreeSet<&TopicPartition> = all.iter().collect();
            let mut taken = BTreeSet::new();
            // Keep previous ownership that is still valid, up to the quota.
            for (member, prev) in previous {
                let Some(topics) = subscriptions.get(member) else {
                    continue;
                };
                let list = out.get_mut(member).expect("member present");
                for tp in prev {
                    if list.len() < quota
                        && valid.contains(tp)
                        && topics.contains(&tp.topic)
                        && taken.insert(tp.clone())
                    {
                        list.push(tp.clone());
                    }
                }
            }
            // Hand the rest, one at a time, to the least-loaded subscriber.
            for tp in all.iter().filter(|tp| !taken.contains(*tp)) {
                let member = out
                    .iter()
                    .filter(|(m, _)| subscriptions[*m].contains(&tp.topic))
                    .min_by_key(|(m, list)| (list.len(), (*m).clone()))
                    .map(|(m, _)| m.clone())
                    .expect("a topic in the list has a subscriber");
                out.get_mut(&member)
                    .expect("member present")
                    .push(tp.clone());
            }
            for list in out.values_mut() {
                list.sort();
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn subs(members: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        members
            .iter()
            .map(|(m, ts)| (m.to_string(), ts.iter().map(|t| t.to_string()).collect()))
            .collect()
    }

    fn tp(t: &str, p: u32) -> TopicPartition {
        TopicPartition {
            topic: t.into(),
            partition: p,
        }
    }

    #[test]
    fn range_gives_contiguous_ranges_extra_to_the_first() {
        let s = subs(&[("a", &["t"]), ("b", &["t"])]);
        let parts = BTreeMap::from([("t".to_string(), 5)]);
        let a = assign(AssignmentStrategy::Range, &s, &parts, &Assignment::new());
        assert_eq!(a["a"], vec![tp("t", 0), tp("t", 1), tp("t", 2)]);
        assert_eq!(a["b"], vec![tp("t", 3), tp("t", 4)]);
    }

    #[test]
    fn round_robin_deals_in_turn() {
        let s = subs(&[("a", &["t", "u"]), ("b", &["t", "u"])]);
        let parts = BTreeMap::from([("t".to_string(), 2), ("u".to_string(), 2)]);
        let a = assign(
            AssignmentStrategy::RoundRobin,
            &s,
            &parts,
            &Assignment::new(),
        );
        assert_eq!(a["a"], vec![tp("t", 0), tp("u", 0)]);
        assert_eq!(a["b"], vec![tp("t", 1), tp("u", 1)]);
    }

    #[test]
    fn sticky_keeps_owners_when_a_member_joins() {
        let parts = BTreeMap::from([("t".to_string(), 6)]);
        let before = assign(
            AssignmentStrategy::Sticky,
            &subs(&[("a", &["t"]), ("b", &["t"])]),
            &parts,
            &Assignment::new(),
        );
        let after = assign(
            AssignmentStrategy::Sticky,
            &subs(&[("a", &["t"]), ("b", &["t"]), ("c", &["t"])]),
            &parts,
            &before,
        );
        for m in ["a", "b"] {
            assert_eq!(after[m].len(), 2);
            assert!(
                after[m].iter().all(|p| before[m].contains(p)),
                "{m} kept its partitions"
            );
        }
        assert_eq!(after["c"].len(), 2);
    }

    proptest! {
        #[test]
        fn every_partition_goes_to_exactly_one_subscriber(
            n_members in 1usize..6,
            topic_parts in proptest::collection::vec(1u32..9, 1..4),
            subs_mask in proptest::collection::vec(1u8..16, 6),
            strategy in prop_oneof![Just(AssignmentStrategy::Range), Just(AssignmentStrategy::RoundRobin), Just(AssignmentStrategy::Sticky)],
        ) {
            let topics: Vec<String> = (0..topic_parts.len()).map(|i| format!("t{i}")).collect();
            let mut s = BTreeMap::new();
            for (m, mask) in subs_mask.iter().enumerate().take(n_members) {
                let mine: Vec<String> = topics.iter().enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0 || *i == m % topics.len())
                    .map(|(_, t)| t.clone()).collect();
                s.insert(format!("m{m}"), mine);
            }
            let parts: BTreeMap<String, u32> = topics.iter().cloned().zip(topic_parts.iter().copied()).collect();
            let a = assign(strategy, &s, &parts, &Assignment::new());
            let mut seen = BTreeSet::new();
            for (member, list) in &a {
                for p in list {
                    prop_assert!(s[member].contains(&p.topic), "assigned to a subscriber");
                    prop_assert!(seen.insert(p.clone()), "assigned once");
                }
            }
            let expected: usize = topics.iter().filter(|t| s.values().any(|ts| ts.contains(t))).map(|t| parts[t] as usize).sum();
            prop_assert_eq!(seen.len(), expected);
            // Sticky re-assignment from its own output is stable.
            if strategy == AssignmentStrategy::Sticky {
                prop_assert_eq!(assign(strategy, &s, &parts, &a), a);
            }
        }
    }
}
