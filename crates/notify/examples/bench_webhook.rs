//! Benchmark helper for `scripts/bench/notify.sh`: starts the recording HTTP server on
//! 127.0.0.1, runs a command against it with records on its standard input, and prints how
//! fast the requests arrived, as one JSON line.
//!
//! ```text
//! bench_webhook EXPECTED INPUT PROGRAM [ARG…]     ("{url}" in an ARG becomes the server's URL)
//! ```
//!
//! The gaps between consecutive receive times are what the client spent per message (its own
//! work plus the server's near-instant answer), independent of start-up time.

use std::fs::File;
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use opsline_testkit::http::HttpServer;
use serde_json::json;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut stderr = std::io::stderr().lock();
            let _ = std::io::Write::write_fmt(&mut stderr, format_args!("bench_webhook: {e:#}\n"));
            ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [expected, input, program, rest @ ..] = args.as_slice() else {
        bail!("usage: bench_webhook EXPECTED INPUT PROGRAM [ARG…]");
    };
    let expected: usize = expected.parse().context("EXPECTED is a number")?;
    let server = HttpServer::start()?;
    let url = server.url("/hook");
    let started = Instant::now();
    let status = Command::new(program)
        .args(rest.iter().map(|a| a.replace("{url}", &url)))
        .stdin(File::open(input).with_context(|| format!("opening {input}"))?)
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {program}"))?;
    let wall = started.elapsed();
    let requests = server.wait_for_requests(expected, Duration::from_secs(10))?;
    let times: Vec<Instant> = requests.iter().map(|r| r.received).collect();
    let mut gaps: Vec<f64> =
        times.windows(2).map(|w| w[1].duration_since(w[0]).as_secs_f64() * 1000.0).collect();
    gaps.sort_by(f64::total_cmp);
    let percentile =
        |p: f64| gaps.get(((gaps.len() as f64 - 1.0) * p).round() as usize).copied().unwrap_or(0.0);
    let mean = if gaps.is_empty() { 0.0 } else { gaps.iter().sum::<f64>() / gaps.len() as f64 };
    let report = json!({
        "exit": status.code(),
        "requests": requests.len(),
        "wall_ms": wall.as_secs_f64() * 1000.0,
        "gap_mean_ms": mean,
        "gap_p50_ms": percentile(0.5),
        "gap_p99_ms": percentile(0.99),
        "first_body_bytes": requests.first().map_or(0, |r| r.body.len()),
    });
    let mut stdout = std::io::stdout().lock();
    std::io::Write::write_fmt(&mut stdout, format_args!("{report}\n"))?;
    Ok(())
}
