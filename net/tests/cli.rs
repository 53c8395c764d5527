//! The `strata` binary end to end: serve, topics, produce, consume, groups, and errors
//! as one line on stderr with a non-zero exit.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_strata");

/// A `strata serve` child process, stopped with SIGINT on drop.
struct Served {
    child: Child,
    addr: String,
}

impl Served {
    fn start(dir: &Path) -> Served {
        let mut child = Command::new(BIN)
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--shards",
                "2",
                "--data-dir",
            ])
            .arg(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().unwrap().unwrap();
        let addr = first
            .strip_prefix("strata listening on ")
            .and_then(|s| s.strip_suffix(" (QUIC)"))
            .unwrap_or_else(|| panic!("unexpected first line {first:?}"))
            .to_owned();
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Served { child, addr }
    }

    fn stop(mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::INT).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "server did not stop on SIGINT");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
    }
}

fn strata(served: &Served, dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .args(["--server", &served.addr, "--data-dir"])
        .arg(dir)
        .env("RUST_LOG", "error")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn topics_produce_consume_and_groups_through_the_cli() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let d = dir.path();

    let o = strata(
        &served,
        d,
        &["topic", "create", "events", "--partitions", "3"],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let o = strata(&served, d, &["topic", "list"], None);
    assert!(
        stdout(&o).starts_with("events\tpartitions=3"),
        "{}",
        stdout(&o)
    );

    let lines = "k1:one\nk2:two\nk1:three\nk3:four\n";
    let o = strata(
        &served,
        d,
        &["produce", "events", "--key-separator", ":"],
        Some(lines),
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("produced 4 records"), "{}", stderr(&o));

    let o = strata(
        &served,
        d,
        &[
            "consume",
            "events",
            "--print-key",
            "--count",
            "4",
            "--idle-exit",
            "5",
        ],
        None,
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let mut got: Vec<String> = stdout(&o).lines().map(str::to_owned).collect();
    // Same key, same partition: k1's records keep their order.
    let k1: Vec<&String> = got.iter().filter(|l| l.starts_with("k1\t")).collect();
    assert_eq!(k1, vec!["k1\tone", "k1\tthree"]);
    got.sort();
    assert_eq!(got, vec!["k1\tone", "k1\tthree", "k2\ttwo", "k3\tfour"]);

    // A group reads two records, commits only those, and the next run gets the rest.
    let first = strata(
        &served,
        d,
        &[
            "consume",
            "events",
            "--group",
            "g",
            "-n",
            "2",
            "--idle-exit",
            "5",
        ],
        None,
    );
    assert!(first.status.success(), "{}", stderr(&first));
    let second = strata(
        &served,
        d,
        &["consume", "events", "--group", "g", "--idle-exit", "2"],
        None,
    );
    let mut all: Vec<String> = stdout(&first)
        .lines()
        .chain(stdout(&second).lines())
        .map(str::to_owned)
        .collect();
    all.sort();
    assert_eq!(
        all,
        vec!["four", "one", "three", "two"],
        "each record exactly once across the two runs"
    );
    let o = strata(&served, d, &["group", "list"], None);
    assert_eq!(stdout(&o).trim(), "g");
    let o = strata(&served, d, &["group", "describe", "g"], None);
    assert!(stdout(&o).contains("committed events/"), "{}", stdout(&o));

    let o = strata(&served, d, &["topic", "describe", "events"], None);
    let hw: u64 = stdout(&o)
        .lines()
        .skip(2)
        .map(|l| l.split('\t').nth(3).unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(hw, 4);
    assert!(served.stop().success(), "clean exit on SIGINT");
}

#[test]
fn errors_are_one_line_with_a_nonzero_exit() {
    let dir = tempfile::tempdir().unwrap();
    let served = Served::start(dir.path());
    let d = dir.path();
    for (args, needle) in [
        (&["topic", "describe", "missing"][..], "unknown topic"),
        (&["topic", "create", "bad name"][..], "invalid topic name"),
        (
            &["consume", "missing", "--idle-exit", "1"][..],
            "unknown topic",
        ),
    ] {
        let o = strata(&served, d, args, None);
        assert!(!o.status.success(), "{args:?} succeeded");
        let err = stderr(&o);
        assert!(
            err.starts_with("error: ") && err.contains(needle),
            "{args:?}: {err}"
        );
        assert_eq!(err.trim_end().lines().count(), 1, "{args:?}: {err}");
    }
    // A wrong token is refused.
    let o = Command::new(BIN)
        .args([
            "topic",
            "list",
            "--server",
            &served.addr,
            "--token",
            "wrong",
            "--data-dir",
        ])
        .arg(d)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).contains("unauthorised") || stderr(&o).contains("token"),
        "{}",
        stderr(&o)
    );
    // No server at all.
    let o = Command::new(BIN)
        .args(["topic", "list", "--server", "127.0.0.1:9", "--data-dir"])
        .arg(d)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(
        stderr(&o).starts_with("error: cannot connect"),
        "{}",
        stderr(&o)
    );
    // Usage errors come from clap with exit code 2.
    let o = Command::new(BIN)
        .args(["topic", "frobnicate"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    let _ = served.stop();
}
