//! Property tests of the batch format (`strata_log::format`): arbitrary batches, plain
//! and lz4, round-trip field by field through `BatchView::parse` and `records`; base
//! offset patching keeps the CRC valid while every other single-bit flip is caught; the
//! header and record validation rules of `docs/FORMAT.md` hold; and decoding arbitrary
//! or mutated bytes returns errors, never panics.

mod support_props;

use proptest::prelude::*;
use proptest::sample::Index;
use strata_log::FormatError;
use strata_log::format::{
    ATTR_TIMESTAMP_TYPE, ATTRIBUTES_POS, BASE_SEQUENCE_POS, BASE_TIMESTAMP_POS, BatchBuilder,
    BatchHeader, BatchIter, BatchView, BuilderOptions, CRC_POS, CRC_START, Compression, HEADER_LEN,
    Header, LAST_OFFSET_DELTA_POS, LENGTH_POS, MAGIC_POS, MAGIC_V1, MAX_BATCH_LEN,
    MAX_TIMESTAMP_POS, MAX_UNCOMPRESSED_LEN, NO_PRODUCER_ID, NO_SEQUENCE, PRODUCER_EPOCH_POS,
    PRODUCER_ID_POS, RECORD_COUNT_POS, TimestampType, patch_base_offset, peek_length,
};
use support_props::{Rec, crc32, decode, encode, opts, push_all, put_i64, put_u32, reseal};

// ---------------------------------------------------------------------------------------
// Strategies.

/// Bytes of up to `max` length: random, or one repeated byte (so lz4 finds matches).
fn arb_bytes(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..=max),
        (any::<u8>(), 0..=max).prop_map(|(b, n)| vec![b; n]),
    ]
}

/// Absent, empty or some bytes.
fn arb_opt_bytes(max: usize) -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(Vec::new())),
        4 => arb_bytes(max).prop_map(Some),
    ]
}

/// Headers: keys (possibly empty) with optional values.
fn arb_headers() -> impl Strategy<Value = Vec<(Vec<u8>, Option<Vec<u8>>)>> {
    prop::collection::vec((arb_bytes(12), arb_opt_bytes(12)), 0..4)
}

/// Records of one batch. Timestamps are a base plus per-record deltas that may be
/// negative (out of order) or anything at all (wrapping around i64).
fn arb_records(max_records: usize, max_value: usize) -> impl Strategy<Value = Vec<Rec>> {
    let base = prop_oneof![
        3 => -(1i64 << 40)..(1i64 << 56),
        1 => any::<i64>(),
        1 => prop::sample::select(vec![i64::MIN, i64::MIN + 1, -1, 0, i64::MAX - 1, i64::MAX]),
    ];
    let delta = prop_oneof![
        4 => -5_000i64..5_000,
        2 => -(1i64 << 40)..(1i64 << 40),
        1 => any::<i64>(),
    ];
    let record = (
        delta,
        arb_opt_bytes(24),
        arb_opt_bytes(max_value),
        arb_headers(),
    );
    (base, prop::collection::vec(record, 1..=max_records)).prop_map(|(base, recs)| {
        recs.into_iter()
            .enumerate()
            .map(|(i, (delta, key, value, headers))| Rec {
                // The first record carries the base timestamp itself.
                ts: if i == 0 {
                    base
                } else {
                    base.wrapping_add(delta)
                },
                key,
                value,
                headers,
            })
            .collect()
    })
}

/// Codec, timestamp type and producer fields (including the "no producer" values).
fn arb_options() -> impl Strategy<Value = BuilderOptions> {
    let compression = prop_oneof![Just(Compression::None), Just(Compression::Lz4)];
    let ts_type = prop_oneof![
        Just(TimestampType::CreateTime),
        Just(TimestampType::LogAppendTime)
    ];
    let producer = prop_oneof![
        Just((NO_PRODUCER_ID, 0u16, NO_SEQUENCE)),
        (any::<u64>(), any::<u16>(), any::<i32>()),
    ];
    (compression, ts_type, producer).prop_map(|(compression, timestamp_type, (id, epoch, seq))| {
        BuilderOptions {
            compression,
            timestamp_type,
            producer_id: id,
            producer_epoch: epoch,
            base_sequence: seq,
            ..BuilderOptions::default()
        }
    })
}

// ---------------------------------------------------------------------------------------
// Checks.

/// Asserts that `batch` is exactly `records` encoded with `options` at `base`: every
/// header field, the CRC as the spec defines it, and every record field.
fn check_batch(batch: &[u8], records: &[Rec], options: &BuilderOptions, base: u64) {
    let n = records.len() as u32;
    let view = BatchView::parse(batch).expect("an encoded batch parses");
    let h = *view.header();
    assert_eq!(view.as_bytes(), batch);
    assert_eq!(BatchHeader::parse(batch).expect("header parses"), h);
    assert_eq!(peek_length(batch), Some(batch.len() as u32));
    assert_eq!(h.length as usize, batch.len());
    assert_eq!(h.base_offset, base);
    assert_eq!(h.magic, MAGIC_V1);
    assert_eq!(
        h.crc,
        crc32(&batch[CRC_START..]),
        "CRC-32 of bytes 12..length"
    );
    assert_eq!(h.record_count, n);
    assert_eq!(h.last_offset_delta, n - 1);
    assert_eq!(h.last_offset(), base + u64::from(n) - 1);
    assert_eq!(h.next_offset(), base + u64::from(n));
    assert_eq!(h.base_timestamp, records[0].ts);
    assert_eq!(h.max_timestamp, records.iter().map(|r| r.ts).max().unwrap());
    assert_eq!(h.compression(), options.compression);
    assert_eq!(h.timestamp_type(), options.timestamp_type);
    assert_eq!(
        h.attributes & ATTR_TIMESTAMP_TYPE != 0,
        options.timestamp_type == TimestampType::LogAppendTime
    );
    assert_eq!(h.producer_id, options.producer_id);
    assert_eq!(h.producer_epoch, options.producer_epoch);
    assert_eq!(h.base_sequence, options.base_sequence);

    let mut scratch = Vec::new();
    view.validate_records(&mut scratch)
        .expect("records validate");
    let mut seen = 0usize;
    for (i, r) in view.records(&mut scratch).unwrap().enumerate() {
        let r = r.expect("record decodes");
        let want = &records[i];
        assert_eq!(r.offset, base + i as u64, "offset of record {i}");
        assert_eq!(r.timestamp, want.ts, "timestamp of record {i}");
        assert_eq!(r.key, want.key.as_deref(), "key of record {i}");
        assert_eq!(r.value, want.value.as_deref(), "value of record {i}");
        assert_eq!(
            r.headers.len(),
            want.headers.len(),
            "header count of record {i}"
        );
        assert_eq!(r.headers.is_empty(), want.headers.is_empty());
        let headers: Vec<Header<'_>> = r.headers.collect();
        let expected: Vec<Header<'_>> = want
            .headers
            .iter()
            .map(|(k, v)| Header {
                key: k,
                value: v.as_deref(),
            })
            .collect();
        assert_eq!(headers, expected, "headers of record {i}");
        seen += 1;
    }
    assert_eq!(seen, records.len());
}

/// Decodes everything reachable from `view`, returning the number of records that
/// decoded, or the first error. Must never panic.
fn drain(view: &BatchView<'_>) -> Result<usize, FormatError> {
    let mut scratch = Vec::new();
    let mut n = 0;
    for r in view.records(&mut scratch)? {
        let r = r?;
        let count = r.headers.len();
        assert_eq!(r.headers.count(), count, "headers of a decoded record");
        n += 1;
    }
    // A fully decoded batch holds exactly the records its header counts.
    assert_eq!(n, view.header().record_count as usize);
    Ok(n)
}

/// Runs every decoder entry point over `bytes`; all must return, none may panic.
fn exercise(bytes: &[u8]) {
    let _ = peek_length(bytes);
    let _ = BatchHeader::parse(bytes);
    if let Ok(view) = BatchView::parse(bytes) {
        let _ = drain(&view);
    }
    let mut items = 0usize;
    let mut failed = false;
    for item in BatchIter::new(bytes) {
        assert!(!failed, "BatchIter yields nothing after an error");
        items += 1;
        assert!(
            items <= bytes.len() / HEADER_LEN + 1,
            "BatchIter makes progress"
        );
        match item {
            Ok(view) => {
                let _ = drain(&view);
            }
            Err(_) => failed = true,
        }
    }
}

/// Writes a version 1 header per `docs/FORMAT.md` (independently of the crate's writer).
#[allow(clippy::too_many_arguments)]
fn forge_header(
    out: &mut [u8],
    length: u32,
    attributes: u8,
    count: u32,
    last_offset_delta: u32,
    base_ts: i64,
    max_ts: i64,
) {
    out[..8].copy_from_slice(&0u64.to_le_bytes());
    put_u32(out, LENGTH_POS, length);
    out[MAGIC_POS] = MAGIC_V1;
    out[ATTRIBUTES_POS] = attributes;
    out[PRODUCER_EPOCH_POS..PRODUCER_EPOCH_POS + 2].copy_from_slice(&7u16.to_le_bytes());
    put_u32(out, LAST_OFFSET_DELTA_POS, last_offset_delta);
    put_i64(out, BASE_TIMESTAMP_POS, base_ts);
    put_i64(out, MAX_TIMESTAMP_POS, max_ts);
    out[PRODUCER_ID_POS..PRODUCER_ID_POS + 8].copy_from_slice(&NO_PRODUCER_ID.to_le_bytes());
    put_u32(out, BASE_SEQUENCE_POS, NO_SEQUENCE as u32);
    put_u32(out, RECORD_COUNT_POS, count);
}

fn sample_records(n: usize) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            ts: 1_000 + (i as i64 % 3) * 10 - 5,
            key: (i % 2 == 0).then(|| format!("k{i}").into_bytes()),
            value: Some(format!("value number {i}").repeat(3).into_bytes()),
            headers: vec![(b"h".to_vec(), Some(vec![i as u8]))],
        })
        .collect()
}

fn format_error(batch: &[u8]) -> FormatError {
    match BatchView::parse(batch) {
        Ok(v) => panic!("batch with header {:?} was accepted", v.header()),
        Err(e) => e,
    }
}

// ---------------------------------------------------------------------------------------
// Properties.

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Every field of every record, and every header field, survives encoding.
    #[test]
    fn batches_round_trip(records in arb_records(40, 300), options in arb_options()) {
        let mut builder = BatchBuilder::new(options);
        push_all(&mut builder, &records);
        prop_assert_eq!(builder.len(), records.len());
        prop_assert!(!builder.is_empty());
        let uncompressed = builder.encoded_len();
        let batch = builder.finish().expect("not empty");
        prop_assert!(builder.is_empty());
        prop_assert_eq!(builder.encoded_len(), 0);
        if options.compression == Compression::None {
            prop_assert_eq!(batch.len(), uncompressed);
        }
        check_batch(&batch, &records, &options, 0);
    }

    /// A reused builder produces independent batches, and `BatchIter` frames their
    /// concatenation (base offsets patched to be consecutive) record for record.
    #[test]
    fn concatenated_batches_iterate_in_order(
        batches in prop::collection::vec((arb_records(8, 64), arb_options()), 1..6),
        cut in any::<Index>(),
    ) {
        let mut builder = BatchBuilder::new(BuilderOptions::default());
        let mut buf = Vec::new();
        let mut bounds = Vec::new(); // (start, end, base, records)
        let mut next = 0u64;
        for (records, options) in &batches {
            let o = options;
            builder.set_producer(o.producer_id, o.producer_epoch, o.base_sequence);
            push_all(&mut builder, records);
            let mut batch = builder.finish().expect("not empty");
            patch_base_offset(&mut batch, next);
            // The reused builder keeps its own codec and timestamp type.
            let o = BuilderOptions {
                compression: Compression::None,
                timestamp_type: TimestampType::CreateTime,
                ..*options
            };
            check_batch(&batch, records, &o, next);
            bounds.push((buf.len(), buf.len() + batch.len(), next, records.clone()));
            buf.extend_from_slice(&batch);
            next += records.len() as u64;
        }
        let decoded = decode(&buf, "concatenation");
        prop_assert_eq!(decoded.len(), batches.len());
        for (d, (start, end, base, records)) in decoded.iter().zip(&bounds) {
            prop_assert_eq!(d.base, *base);
            prop_assert_eq!(d.len, end - start);
            let want: Vec<(u64, Rec)> =
                records.iter().cloned().enumerate().map(|(i, r)| (base + i as u64, r)).collect();
            prop_assert_eq!(&d.records, &want);
        }

        // Cut anywhere: the whole batches before the cut, then one Truncated error.
        let cut = cut.index(buf.len() + 1);
        let mut iter = BatchIter::new(&buf[..cut]);
        for &(start, end, base, _) in &bounds {
            if end <= cut {
                let view = iter.next().expect("a whole batch").expect("valid");
                prop_assert_eq!(view.header().base_offset, base);
            } else if start < cut {
                let available = cut - start;
                let needed = if available < HEADER_LEN { HEADER_LEN } else { end - start };
                let err = iter.next().expect("the cut batch").expect_err("cut batch");
                prop_assert_eq!(err, FormatError::Truncated { needed, available });
                break;
            }
        }
        prop_assert!(iter.next().is_none());
    }

    /// Patching the base offset keeps the CRC valid; any other single-bit flip is
    /// reported as an error, and none panics.
    #[test]
    fn patched_base_offset_keeps_crc_and_flips_are_caught(
        records in arb_records(12, 80),
        options in arb_options(),
        base in prop_oneof![any::<u64>(), 0u64..1_000_000],
        header_bit in any::<bool>(),
        bit in any::<Index>(),
    ) {
        let n = records.len() as u64;
        let base = base.min(u64::MAX - n);
        let mut batch = encode(&records, options);
        let crc_before = batch[CRC_POS..CRC_POS + 4].to_vec();
        patch_base_offset(&mut batch, base);
        prop_assert_eq!(&batch[CRC_POS..CRC_POS + 4], &crc_before[..]);
        check_batch(&batch, &records, &options, base);

        // One past the largest base offset whose records still fit in u64.
        let mut overflow = batch.clone();
        patch_base_offset(&mut overflow, u64::MAX - n + 1);
        prop_assert!(matches!(format_error(&overflow), FormatError::InconsistentHeader(_)));

        let bit = if header_bit { bit.index(HEADER_LEN * 8) } else { bit.index(batch.len() * 8) };
        let mut flipped = batch.clone();
        flipped[bit / 8] ^= 1 << (bit % 8);
        exercise(&flipped);
        let flipped_base = base ^ (1u64 << (bit % 64));
        match BatchView::parse(&flipped) {
            Ok(view) => {
                prop_assert!(bit < 64, "flip of bit {} (byte {}) went undetected", bit, bit / 8);
                prop_assert_eq!(view.header().base_offset, flipped_base);
                prop_assert!(drain(&view).is_ok());
            }
            Err(e) => {
                if bit < 64 {
                    // Only an overflowing base offset is rejected.
                    prop_assert!(flipped_base.checked_add(n).is_none(), "{e}");
                    prop_assert!(matches!(e, FormatError::InconsistentHeader(_)));
                } else if (CRC_POS * 8..LENGTH_POS * 8).contains(&bit) {
                    prop_assert!(matches!(e, FormatError::CrcMismatch { .. }), "{e}");
                }
            }
        }
    }

    /// Arbitrary bytes never make a decoder panic.
    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..1024)) {
        exercise(&bytes);
    }

    /// Arbitrary records sections behind a header whose CRC checks out (so the record
    /// decoder, and the lz4 decoder, see the garbage) return errors, never panic.
    #[test]
    fn forged_batches_with_valid_crc_never_panic(
        count in 1u32..8,
        attributes in prop_oneof![Just(0u8), Just(1u8), Just(ATTR_TIMESTAMP_TYPE), any::<u8>()],
        base_ts in any::<i64>(),
        spread in 0i64..1_000,
        lz4_len in 0u32..4096,
        body in prop::collection::vec(any::<u8>(), 0..512),
        trailing in prop::collection::vec(any::<u8>(), 0..64),
    ) {
        let mut batch = vec![0u8; HEADER_LEN];
        if attributes & 0b111 == 1 {
            // Keep the claimed decompressed size small: the decoder allocates it.
            batch.extend_from_slice(&lz4_len.to_le_bytes());
        }
        batch.extend_from_slice(&body);
        let len = batch.len() as u32;
        let max_ts = base_ts.saturating_add(spread);
        forge_header(&mut batch, len, attributes, count, count - 1, base_ts, max_ts);
        reseal(&mut batch);
        exercise(&batch);
        batch.extend_from_slice(&trailing);
        exercise(&batch);
    }

    /// Valid batches with random bytes overwritten and the CRC recomputed (so the damage
    /// reaches the decoders) return errors or records, never panic.
    #[test]
    fn mutated_batches_with_valid_crc_never_panic(
        records in arb_records(10, 64),
        options in arb_options(),
        edits in prop::collection::vec((any::<Index>(), any::<u8>()), 1..6),
    ) {
        let mut batch = encode(&records, options).to_vec();
        let keep_lz4_len = options.compression == Compression::Lz4;
        for (at, byte) in edits {
            let pos = LENGTH_POS + 4 + at.index(batch.len() - LENGTH_POS - 4);
            if keep_lz4_len && (HEADER_LEN..HEADER_LEN + 4).contains(&pos) {
                continue;
            }
            batch[pos] = byte;
        }
        reseal(&mut batch);
        exercise(&batch);
    }
}

// ---------------------------------------------------------------------------------------
// The validation rules of docs/FORMAT.md, one by one.

#[test]
fn header_validation_rules() {
    let records = sample_records(3);
    let good = encode(&records, opts(Compression::None)).to_vec();
    check_batch(&good, &records, &opts(Compression::None), 0);

    let tamper = |f: &dyn Fn(&mut Vec<u8>), resign: bool| {
        let mut b = good.clone();
        f(&mut b);
        if resign {
            reseal(&mut b);
        }
        b
    };

    // A stale CRC.
    let b = tamper(&|b| b[HEADER_LEN + 3] ^= 0x40, false);
    assert_eq!(
        format_error(&b),
        FormatError::CrcMismatch {
            stored: crc32(&good[CRC_START..]),
            computed: crc32(&b[CRC_START..]),
        }
    );
    // Unknown version.
    let b = tamper(&|b| b[MAGIC_POS] = 2, true);
    assert_eq!(format_error(&b), FormatError::UnsupportedVersion(2));
    // Reserved attribute bits, unknown codecs.
    for attributes in [0x10u8, 0x80, 0x02, 0x07] {
        let b = tamper(&|b| b[ATTRIBUTES_POS] = attributes, true);
        assert_eq!(format_error(&b), FormatError::InvalidAttributes(attributes));
    }
    // The timestamp-type bit is allowed.
    let b = tamper(&|b| b[ATTRIBUTES_POS] = ATTR_TIMESTAMP_TYPE, true);
    assert_eq!(
        BatchView::parse(&b).unwrap().header().timestamp_type(),
        TimestampType::LogAppendTime
    );
    // No records.
    let b = tamper(
        &|b| {
            put_u32(b, RECORD_COUNT_POS, 0);
            put_u32(b, LAST_OFFSET_DELTA_POS, u32::MAX);
        },
        true,
    );
    assert_eq!(format_error(&b), FormatError::Empty);
    // last_offset_delta != record_count - 1.
    let b = tamper(&|b| put_u32(b, LAST_OFFSET_DELTA_POS, 1), true);
    assert!(matches!(
        format_error(&b),
        FormatError::InconsistentHeader(_)
    ));
    // max_timestamp < base_timestamp.
    let b = tamper(&|b| put_i64(b, MAX_TIMESTAMP_POS, 994), true);
    assert!(matches!(
        format_error(&b),
        FormatError::InconsistentHeader(_)
    ));
    // Lengths outside [56, 64 MiB], or past the buffer.
    for length in [0u32, 55, MAX_BATCH_LEN as u32 + 1, u32::MAX] {
        let b = tamper(&|b| put_u32(b, LENGTH_POS, length), true);
        assert_eq!(format_error(&b), FormatError::InvalidLength(length));
    }
    let b = tamper(&|b| put_u32(b, LENGTH_POS, good.len() as u32 + 1), false);
    assert_eq!(
        format_error(&b),
        FormatError::Truncated {
            needed: good.len() + 1,
            available: good.len(),
        }
    );
    for cut in 0..good.len() {
        let needed = if cut < HEADER_LEN {
            HEADER_LEN
        } else {
            good.len()
        };
        assert_eq!(
            format_error(&good[..cut]),
            FormatError::Truncated {
                needed,
                available: cut
            },
            "cut at {cut}"
        );
    }
    // Bytes after the batch are not part of it.
    let mut longer = good.clone();
    longer.extend_from_slice(b"trailing");
    assert_eq!(
        BatchView::parse(&longer).unwrap().as_bytes(),
        &good[..],
        "bytes after the declared length are ignored"
    );
}

#[test]
fn record_section_validation_rules() {
    let records = sample_records(3);
    let good = encode(&records, opts(Compression::None)).to_vec();
    let mut scratch = Vec::new();

    // The header promises a fourth record that is not there.
    let mut more = good.clone();
    put_u32(&mut more, RECORD_COUNT_POS, 4);
    put_u32(&mut more, LAST_OFFSET_DELTA_POS, 3);
    reseal(&mut more);
    let view = BatchView::parse(&more).unwrap();
    let items: Vec<_> = view.records(&mut scratch).unwrap().collect();
    assert_eq!(items.len(), 4);
    assert!(items[..3].iter().all(Result::is_ok));
    assert!(matches!(
        items[3],
        Err(FormatError::MalformedRecord { index: 3, .. })
    ));
    assert!(view.validate_records(&mut scratch).is_err());

    // The header counts fewer records than there are: the rest are trailing bytes.
    let mut fewer = good.clone();
    put_u32(&mut fewer, RECORD_COUNT_POS, 2);
    put_u32(&mut fewer, LAST_OFFSET_DELTA_POS, 1);
    reseal(&mut fewer);
    let view = BatchView::parse(&fewer).unwrap();
    let items: Vec<_> = view.records(&mut scratch).unwrap().collect();
    assert_eq!(items.len(), 3);
    assert!(matches!(
        items[2],
        Err(FormatError::MalformedRecord { index: 2, .. })
    ));

    // A byte appended to the records section (length and CRC updated).
    let mut extra = good.clone();
    extra.push(0);
    let len = extra.len() as u32;
    put_u32(&mut extra, LENGTH_POS, len);
    reseal(&mut extra);
    let view = BatchView::parse(&extra).unwrap();
    assert!(matches!(
        view.validate_records(&mut scratch),
        Err(FormatError::MalformedRecord { index: 3, .. })
    ));

    // lz4: a claimed decompressed size over the limit is refused before allocating.
    let mut lz4 = encode(&records, opts(Compression::Lz4)).to_vec();
    put_u32(&mut lz4, HEADER_LEN, MAX_UNCOMPRESSED_LEN as u32 + 1);
    reseal(&mut lz4);
    let view = BatchView::parse(&lz4).unwrap();
    assert!(matches!(
        view.records(&mut scratch),
        Err(FormatError::Decompress(_))
    ));
    // A wrong (smaller) decompressed size is an error too.
    let mut lz4 = encode(&records, opts(Compression::Lz4)).to_vec();
    put_u32(&mut lz4, HEADER_LEN, 5);
    reseal(&mut lz4);
    let view = BatchView::parse(&lz4).unwrap();
    assert!(view.validate_records(&mut scratch).is_err());
}

#[test]
fn builder_limits() {
    let mut builder = BatchBuilder::new(BuilderOptions {
        max_batch_bytes: 200,
        ..BuilderOptions::default()
    });
    assert_eq!(builder.finish().unwrap_err(), FormatError::Empty);
    builder.push(10, Some(b"a"), Some(&[1u8; 40]), &[]).unwrap();
    let before = builder.encoded_len();
    let err = builder.push(11, None, Some(&[2u8; 150]), &[]).unwrap_err();
    match err {
        FormatError::TooLarge { size, limit } => {
            assert_eq!(limit, 200);
            assert!(size > 200);
        }
        other => panic!("expected TooLarge, got {other}"),
    }
    // The refused record left the batch as it was.
    assert_eq!(builder.encoded_len(), before);
    assert_eq!(builder.len(), 1);
    let batch = builder.finish().unwrap();
    assert!(batch.len() <= 200);
    let decoded = decode(&batch, "builder");
    assert_eq!(decoded[0].records.len(), 1);
    assert_eq!(
        decoded[0].records[0].1.value.as_deref(),
        Some(&[1u8; 40][..])
    );
    // And the builder carries on with the next batch.
    builder.push(12, None, Some(&[3u8; 100]), &[]).unwrap();
    let batch = builder.finish().unwrap();
    let decoded = decode(&batch, "builder reuse");
    assert_eq!(decoded[0].records[0].1.ts, 12);
    assert_eq!(
        decoded[0].records[0].1.value.as_deref(),
        Some(&[3u8; 100][..])
    );
}
