//! The bytes of one committed offset in a coordinator's internal log.
//!
//! ```text
//! record key:   group name (UTF-8)
//! commit value:     kind u8 = 1 | generation u32 | topic_len u16 | topic | partition u32 | offset u64
//! generation value: kind u8 = 2 | generation u32
//! ```
//! All integers little-endian.

use super::assign::TopicPartition;

/// Kind byte of a commit value.
pub const COMMIT_VERSION: u8 = 1;
/// Kind byte of a generation value (written when a group rebalances).
pub const GENERATION_KIND: u8 = 2;

/// Appends the value bytes of a generation record to `out`.
pub fn encode_generation_value(out: &mut Vec<u8>, generation: u32) {
    out.push(GENERATION_KIND);
    out.extend_from_slice(&generation.to_le_bytes());
}

/// Decodes a generation record into (group, generation); `None` if it is not one.
pub fn decode_generation(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<(String, u32)> {
    let group = std::str::from_utf8(key?).ok()?.to_owned();
    let v = value?;
    if v.len() != 5 || v[0] != GENERATION_KIND {
        return None;
    }
    Some((group, u32::from_le_bytes(v[1..5].try_into().ok()?)))
}

/// One decoded commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommitRecord {
    /// Group name.
    pub group: String,
    /// Generation the commit was made in.
    pub generation: u32,
    /// The partition.
    pub tp: TopicPartition,
    /// The committed offset (the next one to consume).
    pub offset: u64,
}

/// Appends the value bytes of a commit to `out`.
pub fn encode_commit_value(out: &mut Vec<u8>, generation: u32, tp: &TopicPartition, offset: u64) {
    out.push(COMMIT_VERSION);
    out.extend_from_slice(&generation.to_le_bytes());
    out.extend_from_slice(&(tp.topic.len() as u16).to_le_bytes());
    out.extend_from_slice(tp.topic.as_bytes());
    out.extend_from_slice(&tp.partition.to_le_bytes());
    out.extend_from_slice(&offset.to_le_bytes());
}

/// Decodes a commit record; `None` if it is malformed.
pub fn decode_commit(key: Option<&[u8]>, value: Option<&[u8]>) -> Option<CommitRecord> {
    let group = std::str::from_utf8(key?).ok()?.to_owned();
    let v = value?;
    if *v.first()? != COMMIT_VERSION {
        return None;
    }
    let generation = u32::from_le_bytes(v.get(1..5)?.try_into().ok()?);
    let tlen = u16::from_le_bytes(v.get(5..7)?.try_into().ok()?) as usize;
    let topic = std::str::from_utf8(v.get(7..7 + tlen)?).ok()?.to_owned();
    let rest = v.get(7 + tlen..)?;
    if rest.len() != 12 {
        return None;
    }
    let partition = u32::from_le_bytes(rest[..4].try_into().ok()?);
    let offset = u64::from_le_bytes(rest[4..].try_into().ok()?);
    Some(CommitRecord {
        group,
        generation,
        tp: TopicPartition { topic, partition },
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_garbage() {
        let tp = TopicPartition {
            topic: "orders".into(),
            partition: 3,
        };
        let mut v = Vec::new();
        encode_commit_value(&mut v, 9, &tp, 12345);
        let c = decode_commit(Some(b"g1"), Some(&v)).unwrap();
        assert_eq!(
            (c.group.as_str(), c.generation, c.tp, c.offset),
            ("g1", 9, tp, 12345)
        );
        for cut in 0..v.len() {
            assert_eq!(decode_commit(Some(b"g1"), Some(&v[..cut])), None);
        }
        assert_eq!(decode_commit(None, Some(&v)), None);
        let mut bad = v.clone();
        bad[0] = 2;
        assert_eq!(decode_commit(Some(b"g1"), Some(&bad)), None);
        let mut g = Vec::new();
        encode_generation_value(&mut g, 77);
        assert_eq!(
            decode_generation(Some(b"g1"), Some(&g)),
            Some(("g1".into(), 77))
        );
        assert_eq!(decode_commit(Some(b"g1"), Some(&g)), None);
        assert_eq!(decode_generation(Some(b"g1"), Some(&v)), None);
    }
}
