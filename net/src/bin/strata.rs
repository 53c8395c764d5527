//! The `strata` command-line tool: server, topics, produce, consume, groups.

use clap::Parser;

fn main() {
    let cli = strata_net::cli::Cli::parse();
    strata_net::cli::init_logging();
    if let Err(message) = strata_net::cli::run(cli) {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}
