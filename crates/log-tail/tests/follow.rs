//! `--follow` through every kind of rotation, woken by inotify, then killed with SIGKILL and
//! restarted at random moments: everything written comes out, repeats only after a kill, and
//! SIGTERM saves the position (a later run has nothing left to print).

#![allow(clippy::print_stderr)] // seeds and run summaries help replay a failure

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use common::{Ledger, LogWriter, Rng, Rotation, command, number, wait_for};

struct Follower {
    child: Child,
    seen: Arc<Mutex<Vec<u64>>>,
    reader: JoinHandle<()>,
}

impl Follower {
    fn start(home: &Path, state: &Path, log: &Path) -> Self {
        let mut child = command(home, &[&"--follow", &"--state", &state, &log])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reader = {
            let seen = seen.clone();
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let record: serde_json::Value = serde_json::from_str(&line).unwrap();
                    seen.lock().unwrap().push(number(&record));
                }
            })
        };
        Follower { child, seen, reader }
    }

    fn has(&self, n: u64) -> bool {
        self.seen.lock().unwrap().contains(&n)
    }

    /// Stops it with SIGKILL (or SIGTERM) and returns what it printed.
    fn stop(mut self, kill: bool) -> (Vec<u64>, Option<i32>) {
        if kill {
            self.child.kill().unwrap();
        } else {
            common::terminate(&self.child);
        }
        let status = self.child.wait().unwrap();
        self.reader.join().unwrap();
        let seen = self.seen.lock().unwrap().clone();
        (seen, status.code())
    }
}

#[test]
fn follow_through_rotation_and_kills_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("auth.log");
    let state = dir.path().join("state.json");
    let mut rng = Rng::seeded("follow");
    let mut writer = LogWriter::create(&log, rng.clone());
    writer.append(20);
    let mut ledger = Ledger::default();
    let mut follower = Follower::start(dir.path(), &state, &log);

    for how in [
        Rotation::RenameCreate { late: 3 },
        Rotation::Compress,
        Rotation::CopyTruncate,
        Rotation::DeleteRecreate { late: 2 },
        Rotation::RenameCreate { late: 0 },
        Rotation::DeleteRecreate { late: 0 },
    ] {
        for _ in 0..rng.range(2, 5) {
            writer.append(rng.range(5, 40));
            thread::sleep(Duration::from_millis(rng.range(1, 10)));
        }
        if matches!(how, Rotation::DeleteRecreate { .. }) {
            // Only a reader that has the file open can read a deleted file's last lines.
            let last = writer.written();
            assert!(wait_for(Duration::from_secs(20), || follower.has(last)), "no catch-up");
        }
        writer.rotate(how);
        if rng.chance(0.5) {
            // The new file stays empty a while: the old one is still being read.
            thread::sleep(Duration::from_millis(rng.range(20, 60)));
        }
    }
    writer.append(10);

    for _ in 0..6 {
        for _ in 0..rng.range(2, 5) {
            writer.append(rng.range(5, 40));
            thread::sleep(Duration::from_millis(rng.range(1, 10)));
        }
        let how = [Rotation::RenameCreate { late: 2 }, Rotation::Compress, Rotation::CopyTruncate]
            [rng.range(0, 3) as usize];
        writer.rotate(how);
        writer.append(rng.range(1, 30));
        thread::sleep(Duration::from_millis(rng.range(0, 1500)));
        let (seen, _) = follower.stop(true);
        ledger.add_run(&seen, true);
        follower = Follower::start(dir.path(), &state, &log);
    }
    writer.append(10);
    let last = writer.written();
    assert!(wait_for(Duration::from_secs(20), || follower.has(last)), "never caught up");
    let (seen, code) = follower.stop(false);
    assert_eq!(code, Some(0), "SIGTERM is a clean stop");
    ledger.add_run(&seen, false);
    ledger.check(writer.written());
    eprintln!("{} lines, {} repeats after kills", writer.written(), ledger.repeats());

    let after = common::run(dir.path(), &[&"--state", &state, &log]);
    assert_eq!(after.code, Some(0), "{}", after.stderr);
    assert!(after.records.is_empty(), "SIGTERM saved the position: {:?}", after.lines());
}
