//! Probe: fixed iterations of the engine bench's produce cases, interleaved, with
//! getrusage CPU time (read once the other threads have settled) and context switches.
//! Not a criterion bench.
use std::time::{Duration, Instant};
use strata_bench::engine_hosted::HostedEngine;
use strata_bench::engine_load::{
    BATCHES, PER_BATCH, Producers, batches_n, engine, log_pair, partition_config, produce_engine,
    produce_engine_many, produce_log,
};
use strata_log::Partition;

fn usage() -> (Duration, u64) {
    strata_bench::settled_usage()
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
    // Batches per partition per round: longer rounds leave less to the barrier that
    // ends each one (both partitions must finish before the next round starts).
    let per_round: usize = std::env::var("BATCHES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(BATCHES);
    let template = batches_n(per_round);
    let msgs = (per_round * PER_BATCH * 2 * iters) as f64;
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
                    let mut p = Partition::open(dir.path(), partition_config()).unwrap();
                    for _ in 0..iters {
                        let mut ab = Some((template.clone(), template.clone()));
                        run(&mut || {
                            let (a, b) = ab.take().unwrap();
                            produce_log(&mut p, a);
                            produce_log(&mut p, b);
                        });
                    }
                }
                "log2" => {
                    // Two bare logs on two threads: how far the machine itself scales.
                    let [mut a, mut b] = log_pair(dir.path());
                    std::thread::scope(|s| {
                        let logs = Producers::logs(s, [&mut a, &mut b]);
                        for _ in 0..iters {
                            let mut inputs = Some([template.clone(), template.clone()]);
                            run(&mut || logs.round(inputs.take().unwrap()));
                        }
                    });
                }
                c if c.starts_with('h') => {
                    let shards = if c == "h2" { 2 } else { 1 };
                    let hosted = HostedEngine::open(dir.path(), shards);
                    for _ in 0..iters {
                        let mut inputs = Some([template.clone(), template.clone()]);
                        run(&mut || hosted.round(inputs.take().unwrap()));
                    }
                    hosted.shutdown();
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
                            let producers = Producers::spawn(s, &e, per);
                            for _ in 0..iters {
                                let mut inputs = Some([template.clone(), template.clone()]);
                                run(&mut || producers.round(inputs.take().unwrap()));
                            }
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
