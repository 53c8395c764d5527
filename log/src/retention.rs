//! Retention policy: which sealed segments to delete, as a pure function.

use std::time::Duration;

/// What retention needs to know about one sealed segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStat {
    /// Size in bytes.
    pub size: u64,
    /// Newest record timestamp (µs since the Unix epoch), if any.
    pub max_timestamp: Option<i64>,
}

/// Limits that retention enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetentionPolicy {
    /// Keep at least this many bytes; delete older segments beyond it.
    pub max_bytes: Option<u64>,
    /// Delete segments whose newest record is older than this.
    pub max_age: Option<Duration>,
}

/// How many of the oldest sealed segments (`sealed`, oldest first) to delete.
///
/// Size: a segment goes while the log would still hold at least `max_bytes` without it
/// (`active_size` counts toward the total). Age: a segment goes when its newest record is
/// older than `now_us - max_age`. Deletion is always a prefix: segments go oldest first.
pub fn segments_to_delete(
    sealed: &[SegmentStat],
    active_size: u64,
    policy: &RetentionPolicy,
    now_us: i64,
) -> usize {
    let mut total: u64 = sealed.iter().map(|s| s.size).sum::<u64>() + active_size;
    let cutoff = policy
        .max_age
        .map(|age| now_us.saturating_sub(i64::try_from(age.as_micros()).unwrap_or(i64::MAX)));
    let mut n = 0;
    for seg in sealed {
        let by_size = policy
            .max_bytes
            .is_some_and(|limit| total.saturating_sub(seg.size) >= limit);
        let by_age = match (cutoff, seg.max_timestamp) {
            (Some(cut), Some(ts)) => ts < cut,
            // An empty segment holds nothing to keep.
            (Some(_), None) => true,
            (None, _) => false,
        };
        if !(by_size || by_age) {
            break;
        }
        total -= seg.size;
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(size: u64, ts: i64) -> SegmentStat {
        SegmentStat {
            size,
            max_timestamp: Some(ts),
        }
    }

    #[test]
    fn size_keeps_at_least_the_limit() {
        let sealed = [seg(100, 1), seg(100, 2), seg(100, 3)];
        let p = RetentionPolicy {
            max_bytes: Some(250),
            max_age: None,
        };
        // 350 total: dropping one leaves 250 >= 250; dropping two leaves 150 < 250.
        assert_eq!(segments_to_delete(&sealed, 50, &p, 0), 1);
        let p = RetentionPolicy {
            max_bytes: Some(10),
            max_age: None,
        };
        assert_eq!(segments_to_delete(&sealed, 50, &p, 0), 3);
    }

    #[test]
    fn age_deletes_a_prefix_only() {
        let sealed = [seg(1, 10), seg(1, 500), seg(1, 20)];
        let p = RetentionPolicy {
            max_bytes: None,
            max_age: Some(Duration::from_micros(100)),
        };
        // cutoff = 1000 - 100 = 900: all older, all go.
        assert_eq!(segments_to_delete(&sealed, 0, &p, 1000), 3);
        // cutoff = 400: the second segment is newer, so it and everything after stay.
        assert_eq!(segments_to_delete(&sealed, 0, &p, 500), 1);
    }

    #[test]
    fn no_policy_deletes_nothing() {
        let sealed = [seg(1 << 40, 0)];
        assert_eq!(
            segments_to_delete(&sealed, 0, &RetentionPolicy::default(), i64::MAX),
            0
        );
    }
}
