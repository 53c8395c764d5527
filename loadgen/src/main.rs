//! `strata-loadgen`: drives a strata server (embedded by default) with producers and
//! consumers, verifies every message, prints the report table and the verdict.
//!
//! Exit status: 0 when the verdict passes, 2 when it fails (a message lost, duplicated,
//! reordered or corrupted, nothing sent or received, or an asserted target missed),
//! 1 when the run could not complete (the error is printed as one `error: ...` line).

use clap::Parser;
use std::process::ExitCode;
use strata_loadgen::config::Args;

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("loadgen")
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(strata_loadgen::run(args)) {
        Ok(report) => {
            print!("{}", report.to_table());
            if report.passed() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(2)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
