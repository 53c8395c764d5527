//! Short end-to-end runs of the load generator against an embedded server: every
//! message must arrive intact, once and in order, and the JSON report must carry every
//! required field. No timing is asserted.

use clap::Parser;
use serde_json::Value;
use strata_loadgen::config::Args;

fn args(extra: &[&str]) -> Args {
    let base = [
        "strata-loadgen",
        "--duration",
        "3s",
        "--warmup",
        "1s",
        "--no-baselines",
        "--no-progress",
    ];
    let args = Args::try_parse_from(base.iter().chain(extra.iter()).copied()).unwrap();
    args.validate().unwrap();
    args
}

async fn run_and_check(mut a: Args) -> (strata_loadgen::report::Report, Value) {
    let dir = tempfile::tempdir().unwrap();
    let json = dir.path().join("report.json");
    a.json = Some(json.clone());
    let report = strata_loadgen::run(a).await.unwrap();
    assert_eq!(report.lost, 0, "{}", report.to_table());
    assert_eq!(report.duplicated, 0, "{}", report.to_table());
    assert_eq!(report.reordered, 0, "{}", report.to_table());
    assert_eq!(report.corrupted, 0, "{}", report.to_table());
    assert!(report.messages_acked > 0, "{}", report.to_table());
    assert_eq!(
        report.messages_received,
        report.messages_acked,
        "{}",
        report.to_table()
    );
    assert!(report.passed(), "{}", report.to_table());
    let v: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    for field in strata_loadgen::report::REQUIRED_FIELDS {
        assert!(v.get(field).is_some(), "JSON report lacks {field}: {v}");
    }
    for latency in ["produce_latency_us", "e2e_latency_us"] {
        for p in ["p50", "p90", "p99", "p999", "p9999", "max"] {
            assert!(
                v[latency].get(p).is_some_and(Value::is_u64),
                "JSON report lacks {latency}.{p}"
            );
        }
    }
    assert_eq!(v["messages_acked"], report.messages_acked);
    assert_eq!(v["lost"], 0);
    (report, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_e2e_run_delivers_everything_once_in_order() {
    let (report, v) = run_and_check(args(&[
        "--producers",
        "1",
        "--consumers",
        "1",
        "--rate",
        "20000",
    ]))
    .await;
    assert_eq!(v["scenario"], "e2e");
    assert!(report.messages_sent >= report.messages_acked);
    assert!(report.e2e_latency_us.count > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn short_group_run_with_churn_loses_nothing() {
    let (report, v) = run_and_check(args(&[
        "--scenario",
        "group",
        "--producers",
        "1",
        "--consumers",
        "2",
        "--partitions",
        "4",
        "--rate",
        "10000",
        "--churn-interval",
        "1s",
    ]))
    .await;
    assert_eq!(v["scenario"], "group");
    assert!(report.messages_received > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn message_count_bounds_a_consume_run() {
    let (report, v) = run_and_check(args(&[
        "--scenario",
        "consume",
        "--producers",
        "1",
        "--consumers",
        "2",
        "--messages",
        "20000",
    ]))
    .await;
    assert_eq!(v["scenario"], "consume");
    assert_eq!(report.messages_acked, 20_000);
    assert_eq!(report.messages_sent, 20_000);
}
