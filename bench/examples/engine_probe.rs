//! Probe: fixed iterations of the engine bench's produce cases, interleaved, with
//! getrusage CPU time and context switches. Not a criterion bench.
use bytes::BytesMut;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use strata_log::format::{BatchBuilder, BuilderOptions};
use strata_log::{Durability, Engine, EngineConfig, Partition, PartitionConfig, TopicConfig};

const RECORD: usize = 100;
const PER_BATCH: usize = 100;
const BATCHES: usize = 400;
const WINDOW: usize = 16;
const SEGMENT: u64 = 64 << 20;

fn usage() -> (Duration, u64) {
    strata_bench::process_usage()
}

fn batches() -> Vec<BytesMut> {
    let mut b = BatchBuilder::new(BuilderOptions::default());
    let value = [0x5Au8; RECORD];
    (0..BATCHES)
        .map(|i| {
            for r in 0..PER_BATCH {
                b.push((i * PER_BATCH + r) as i64, None, Some(&value), &[])
                    .unwrap();
            }
            b.finish().unwrap()
        })
        .collect()
}
fn pc() -> PartitionConfig {
    PartitionConfig {
        segment_bytes: SEGMENT,
        durability: Durability::Written,
        retention_age: None,
        ..PartitionConfig::default()
    }
}
fn engine(dir: &std::path::Path, shards: usize) -> Engine {
    let mut c = EngineConfig::new(dir);
    c.shards = shards;
    c.partition_defaults = pc();
    let e = Engine::open(c).unwrap();
    e.create_topic(
        "bench",
        TopicConfig {
            partitions: 2,
            segment_bytes: SEGMENT,
            retention_ms: None,
            durability: Durability::Written,
            ..TopicConfig::default()
        },
    )
    .unwrap();
    e
}
fn produce_engine(e: &Engine, partition: u32, batches: Vec<BytesMut>) {
    let mut inflight = VecDeque::with_capacity(WINDOW);
    for b in batches {
        if inflight.len() == WINDOW {
            let p: strata_log::Pending<_> = inflight.pop_front().unwrap();
            p.wait().unwrap();
        }
        inflight.push_back(e.produce("bench", partition, b).unwrap());
    }
    for p in inflight {
        p.wait().unwrap();
    }
}
#[allow(dead_code)]
fn produce_engine_many(e: &Engine, partition: u32, batches: Vec<BytesMut>, per: usize) {
    let mut inflight = VecDeque::with_capacity(WINDOW / per);
    let mut it = batches.into_iter();
    loop {
        let group: Vec<BytesMut> = it.by_ref().take(per).collect();
        if group.is_empty() {
            break;
        }
        if inflight.len() == WINDOW / per {
            let p: strata_log::Pending<Vec<strata_log::Result<strata_log::Appended>>> =
                inflight.pop_front().unwrap();
            for r in p.wait().unwrap() {
                r.unwrap();
            }
        }
        inflight.push_back(e.produce_many("bench", partition, group).unwrap());
    }
    for p in inflight {
        let p: strata_log::Pending<Vec<strata_log::Result<strata_log::Appended>>> = p;
        for r in p.wait().unwrap() {
            r.unwrap();
        }
    }
}
fn produce_log(p: &mut Partition, batches: Vec<BytesMut>) {
    let mut last = VecDeque::with_capacity(WINDOW);
    for b in batches {
        if last.len() == WINDOW {
            let wanted: u64 = last.pop_front().unwrap();
            while p.high_watermark() <= wanted {
                p.wait().unwrap();
            }
        }
        last.push_back(p.submit(b).unwrap().last_offset);
    }
    p.flush().unwrap();
}

fn main() {
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let iters: usize = std::env::var("ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let cases: Vec<String> = std::env::var("CASES")
        .unwrap_or("log,e1,e2".into())
        .split(',')
        .map(String::from)
        .collect();
    let template = batches();
    let msgs = (BATCHES * PER_BATCH * 2 * iters) as f64;
    let mut res: Vec<Vec<(f64, f64, f64)>> = vec![Vec::new(); cases.len()];
    for _ in 0..rounds {
        for (ci, case) in cases.iter().enumerate() {
            let dir = tempfile::tempdir().unwrap();
            let (mut wall, mut cpu, mut cs) = (Duration::ZERO, Duration::ZERO, 0u64);
            let mut run = |f: &mut dyn FnMut()| {
                let (c0, s0) = usage();
                let t = Instant::now();
                f();
                wall += t.elapsed();
                let (c1, s1) = usage();
                cpu += c1 - c0;
                cs += s1 - s0;
            };
            match case.as_str() {
                "log" => {
                    let mut p = Partition::open(dir.path(), pc()).unwrap();
                    for _ in 0..iters {
                        let mut ab = Some((template.clone(), template.clone()));
                        run(&mut || {
                            let (a, b) = ab.take().unwrap();
                            produce_log(&mut p, a);
                            produce_log(&mut p, b);
                        });
                    }
                }
                c => {
                    let shards = if c.starts_with("e2") { 2 } else { 1 };
                    let per: usize = c
                        .split_once('m')
                        .map(|(_, n)| n.parse().unwrap())
                        .unwrap_or(0);
                    let e = engine(dir.path(), shards);
                    let persistent = std::env::var("PERSIST").is_ok();
                    if persistent {
                        std::thread::scope(|s| {
                            let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
                            let mut work = Vec::new();
                            for partition in 0..2u32 {
                                let (tx, rx) = std::sync::mpsc::channel::<Vec<BytesMut>>();
                                work.push(tx);
                                let (e, done_tx) = (&e, done_tx.clone());
                                s.spawn(move || {
                                    for batches in rx {
                                        if per == 0 {
                                            produce_engine(e, partition, batches)
                                        } else {
                                            produce_engine_many(e, partition, batches, per)
                                        }
                                        done_tx.send(()).unwrap();
                                    }
                                });
                            }
                            for _ in 0..iters {
                                let mut inputs = Some([template.clone(), template.clone()]);
                                run(&mut || {
                                    for (tx, b) in work.iter().zip(inputs.take().unwrap()) {
                                        tx.send(b).unwrap();
                                    }
                                    done_rx.recv().unwrap();
                                    done_rx.recv().unwrap();
                                });
                            }
                            drop(work);
                        });
                    } else {
                        for _ in 0..iters {
                            let mut inputs = Some([template.clone(), template.clone()]);
                            run(&mut || {
                                let inputs = inputs.take().unwrap();
                                std::thread::scope(|s| {
                                    for (partition, batches) in inputs.into_iter().enumerate() {
                                        let e = &e;
                                        if per == 0 {
                                            s.spawn(move || {
                                                produce_engine(e, partition as u32, batches)
                                            });
                                        } else {
                                            s.spawn(move || {
                                                produce_engine_many(
                                                    e,
                                                    partition as u32,
                                                    batches,
                                                    per,
                                                )
                                            });
                                        }
                                    }
                                });
                            });
                        }
                    }
                    e.shutdown().unwrap();
                }
            }
            res[ci].push((
                msgs / wall.as_secs_f64() / 1e6,
                msgs / cpu.as_secs_f64() / 1e6,
                cs as f64 / (msgs / PER_BATCH as f64),
            ));
        }
    }
    for (ci, case) in cases.iter().enumerate() {
        let mut r = res[ci].clone();
        let med = |f: &dyn Fn(&(f64, f64, f64)) -> f64, r: &mut Vec<(f64, f64, f64)>| {
            let mut v: Vec<f64> = r.iter().map(f).collect();
            v.sort_by(|a, b| a.partial_cmp(b).unwrap());
            v[v.len() / 2]
        };
        println!(
            "{case:8} msgs/s {:6.2} M  per-CPU-s {:6.2} M  ctxsw/batch {:5.2}   all cpu: {:?}",
            med(&|x| x.0, &mut r),
            med(&|x| x.1, &mut r),
            med(&|x| x.2, &mut r),
            r.iter()
                .map(|x| (x.1 * 100.0).round() / 100.0)
                .collect::<Vec<_>>()
        );
    }
}
