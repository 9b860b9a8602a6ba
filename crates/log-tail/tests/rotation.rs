//! A writer appends numbered lines and rotates its log every way logrotate does while
//! `log-tail` runs again and again (some runs killed with SIGKILL at random moments): the union
//! of everything emitted must be everything written, repeats only after a killed run.

#![allow(clippy::print_stderr)] // seeds and run summaries help replay a failure

mod common;

use std::io::Read;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use common::{Ledger, LogWriter, Rng, Rotation, Run, command, number};

const CYCLE: [Rotation; 6] = [
    Rotation::RenameCreate { late: 3 },
    Rotation::Compress,
    Rotation::CopyTruncate,
    Rotation::RenameCreate { late: 0 },
    Rotation::Compress,
    Rotation::RenameCreate { late: 1 },
];

#[test]
fn repeated_and_killed_runs_lose_nothing_through_every_rotation() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let state = dir.path().join("state.json");
    let mut rng = Rng::seeded("batch");
    let mut writer = LogWriter::create(&log, rng.clone());
    writer.append(50);
    // The first run is not killed: a run killed before it saved anything leaves no position,
    // and the next one starts on the log as it is then, like any first run.
    let first =
        Run::from_output(command(dir.path(), &[&"--state", &state, &log]).output().unwrap());
    assert_eq!(first.code, Some(0), "{}", first.stderr);
    let done = Arc::new(AtomicBool::new(false));
    let writing = {
        let done = done.clone();
        let mut rng = rng.clone();
        thread::spawn(move || {
            for round in 0..10 {
                for (step, how) in CYCLE.into_iter().enumerate() {
                    for _ in 0..rng.range(2, 6) {
                        writer.append(rng.range(5, 60));
                        thread::sleep(Duration::from_millis(rng.range(1, 12)));
                    }
                    writer.rotate(how);
                    // Two rotations while log-tail is not looking: rotate again at once.
                    if (round + step) % 4 == 0 {
                        writer.append(rng.range(1, 20));
                        writer.rotate(Rotation::RenameCreate { late: 0 });
                    }
                    // Sometimes the new file stays empty for a while.
                    if rng.chance(0.3) {
                        thread::sleep(Duration::from_millis(rng.range(10, 40)));
                    }
                }
            }
            writer.append(25);
            done.store(true, Ordering::SeqCst);
            writer
        })
    };

    let mut ledger = Ledger::default();
    ledger.add_run(&first.records.iter().map(number).collect::<Vec<_>>(), false);
    let mut killed_runs = 0;
    while !done.load(Ordering::SeqCst) {
        let mut child = command(dir.path(), &[&"-v", &"--state", &state, &log])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let kill = rng.chance(0.35);
        if kill {
            thread::sleep(Duration::from_micros(rng.range(0, 15_000)));
            let _ = child.kill();
        }
        let mut stdout = Vec::new();
        child.stdout.take().unwrap().read_to_end(&mut stdout).unwrap();
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        let status = child.wait().unwrap();
        let killed = status.code().is_none();
        assert!(killed || status.success(), "run failed: {status}: {stderr}");
        killed_runs += usize::from(killed);
        if !stderr.is_empty() {
            eprintln!("run {}: {stderr}", ledger.runs());
        }
        let numbers: Vec<u64> = common::records(&stdout).iter().map(number).collect();
        eprintln!(
            "run {} killed={killed}: {:?}..{:?} ({})",
            ledger.runs(),
            numbers.first(),
            numbers.last(),
            numbers.len()
        );
        ledger.add_run(&numbers, killed);
        thread::sleep(Duration::from_millis(rng.range(0, 25)));
    }
    let writer = writing.join().unwrap();
    let last = Run::from_output(command(dir.path(), &[&"--state", &state, &log]).output().unwrap());
    assert_eq!(last.code, Some(0), "{}", last.stderr);
    ledger.add_run(&last.records.iter().map(number).collect::<Vec<_>>(), false);
    ledger.check(writer.written());
    eprintln!(
        "{} runs ({killed_runs} killed), {} lines, {} repeats",
        ledger.runs(),
        writer.written(),
        ledger.repeats()
    );
    assert!(ledger.runs() >= 20, "too few runs to mean anything: {}", ledger.runs());
}
