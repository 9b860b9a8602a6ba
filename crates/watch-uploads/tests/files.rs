//! Real inotify on real files written by this test: what counts as a finished upload, and
//! that nothing is lost or repeated (new folders, queue overflow, restarts).

mod common;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::{Duration, Instant};

use common::{Watcher, canonical, path_of, upload};
use serde_json::{Value, json};

fn arg(path: &Path) -> String {
    path.to_str().unwrap().to_owned()
}

fn dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn closed_upload_is_reported_once_after_settling_and_other_names_are_not() {
    let tree = dir();
    let w = Watcher::start(&["--settle", "300ms", "--no-state", &arg(tree.path())]);
    upload(&tree.path().join("notes.txt"), b"text");
    upload(&tree.path().join("film.mp4.filepart"), b"partial");
    upload(&tree.path().join(".in.film.mp4"), b"lftp temp");
    let written = Instant::now();
    upload(&tree.path().join("Film.MP4"), b"0123456789");
    let record = w.next();
    assert!(written.elapsed() >= Duration::from_millis(300), "reported before the settle time");
    assert_eq!(record["kind"], "upload");
    assert_eq!(path_of(&record), canonical(&tree.path().join("Film.MP4")));
    assert_eq!(record["size"], 10);
    assert_eq!(record["via"], "close_write");
    assert_eq!(record["user"], json!({"login": "root"}));
    chrono::DateTime::parse_from_rfc3339(record["mtime"].as_str().unwrap()).unwrap();
    chrono::DateTime::parse_from_rfc3339(record["ts"].as_str().unwrap()).unwrap();
    assert_eq!(w.drain_for(Duration::from_secs(1)), Vec::<Value>::new());
    let (status, rest, _) = w.stop();
    assert_eq!(status.code(), Some(0));
    assert!(rest.is_empty());
}

#[test]
fn a_file_written_again_while_settling_is_reported_once_with_its_final_size() {
    let tree = dir();
    let w = Watcher::start(&["--settle", "1s", "--no-state", &arg(tree.path())]);
    let path = tree.path().join("a.mov");
    upload(&path, b"first");
    std::thread::sleep(Duration::from_millis(500));
    let mut file = OpenOptions::new().append(true).open(&path).unwrap();
    file.write_all(b" and more").unwrap();
    drop(file);
    let record = w.next();
    assert_eq!(record["size"], 14);
    assert!(w.drain_for(Duration::from_millis(1500)).is_empty());
}

#[test]
fn a_file_another_process_still_writes_is_held_back_until_it_closes() {
    let tree = dir();
    let w = Watcher::start(&["--settle", "300ms", "--no-state", &arg(tree.path())]);
    let path = tree.path().join("held.avi");
    // A second writer keeps the file open after the first handle closed (IN_CLOSE_WRITE).
    let mut keeper = std::process::Command::new("sh")
        .args(["-c", "exec 3>>\"$1\"; read _", "sh"])
        .arg(&path)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + common::TIMEOUT;
    while !path.exists() {
        assert!(Instant::now() < deadline);
        std::thread::yield_now();
    }
    upload(&path, b"payload");
    assert!(w.drain_for(Duration::from_secs(2)).is_empty(), "reported while open for writing");
    drop(keeper.stdin.take());
    keeper.wait().unwrap();
    let record = w.next();
    assert_eq!(path_of(&record), canonical(&path));
    assert_eq!(record["size"], 7);
}

#[test]
fn renames_into_place_are_reported_at_once() {
    let tree = dir();
    let w = Watcher::start(&["--settle", "5s", "--no-state", &arg(tree.path())]);
    // rename(2), as posix-rename and most clients do.
    let temp = tree.path().join("one.mp4.filepart");
    upload(&temp, b"one");
    fs::rename(&temp, tree.path().join("one.mp4")).unwrap();
    let record = w.next();
    assert_eq!(path_of(&record), canonical(&tree.path().join("one.mp4")));
    assert_eq!(record["via"], "moved_to");
    // link + unlink, as OpenSSH's plain SFTP rename does.
    let temp = tree.path().join("two.tmp");
    upload(&temp, b"two");
    std::thread::sleep(Duration::from_millis(200));
    fs::hard_link(&temp, tree.path().join("two.mp4")).unwrap();
    fs::remove_file(&temp).unwrap();
    let record =
        w.next_within(Duration::from_secs(3)).expect("reported well before the settle time");
    assert_eq!(path_of(&record), canonical(&tree.path().join("two.mp4")));
    assert_eq!(record["via"], "moved_to");
    // Renaming a reported file does not make it a new upload.
    fs::rename(tree.path().join("one.mp4"), tree.path().join("uno.mp4")).unwrap();
    assert!(w.drain_for(Duration::from_secs(1)).is_empty());
}

#[test]
fn a_link_rename_read_late_is_still_reported_at_once() {
    let tree = dir();
    let w = Watcher::start(&["--settle", "10s", "--no-state", &arg(tree.path())]);
    // A watcher behind the file system (a busy machine) reads the close of the temporary name
    // when the name is gone already: it never sees the closed inode under its old name, and
    // the new name has one link again when it looks.
    w.freeze();
    let temp = tree.path().join("late.mp4.filepart");
    upload(&temp, b"late");
    fs::hard_link(&temp, tree.path().join("late.mp4")).unwrap();
    fs::remove_file(&temp).unwrap();
    let thawed = Instant::now();
    w.signal("-CONT");
    let record = w.next();
    assert!(thawed.elapsed() < Duration::from_secs(5), "waited for the settle time");
    assert_eq!(path_of(&record), canonical(&tree.path().join("late.mp4")));
    assert_eq!(record["via"], "moved_to");
    assert_eq!(record["size"], 4);
    assert!(w.drain_for(Duration::from_secs(1)).is_empty());
}

#[test]
fn a_file_created_while_behind_and_still_open_waits_for_its_close() {
    let tree = dir();
    let w = Watcher::start(&["--settle", "300ms", "--no-state", &arg(tree.path())]);
    w.freeze();
    // The same events as a late-seen link rename (a closed name vanishes after another name
    // appeared), but the new name is a file this process is still writing.
    let temp = tree.path().join("gone.mp4.filepart");
    upload(&temp, b"gone");
    let path = tree.path().join("held.mp4");
    let mut writer = fs::File::create(&path).unwrap();
    writer.write_all(b"part").unwrap();
    fs::remove_file(&temp).unwrap();
    w.signal("-CONT");
    assert!(w.drain_for(Duration::from_secs(2)).is_empty(), "reported while open for writing");
    writer.write_all(b" and the rest").unwrap();
    drop(writer);
    let record = w.next();
    assert_eq!(path_of(&record), canonical(&path));
    assert_eq!(record["size"], 17);
    assert_eq!(record["via"], "close_write");
    assert!(w.drain_for(Duration::from_secs(1)).is_empty());
}

#[test]
fn a_thousand_files_in_fresh_nested_folders_are_all_reported_once() {
    let tree = dir();
    let w = Watcher::start(&["--settle", "200ms", "--no-state", &arg(tree.path())]);
    let mut expected = Vec::new();
    for a in 0..10 {
        for b in 0..10 {
            let folder = tree.path().join(format!("u{a}/in/{b}"));
            fs::create_dir_all(&folder).unwrap();
            for c in 0..10 {
                let path = folder.join(format!("clip {c}.mp4"));
                upload(&path, format!("{a}{b}{c}").as_bytes());
                expected.push(canonical(&path));
            }
        }
    }
    let records = w.take(expected.len());
    let mut seen: Vec<String> = records.iter().map(|r| path_of(r).to_owned()).collect();
    seen.sort();
    expected.sort();
    assert_eq!(seen, expected);
    assert!(w.drain_for(Duration::from_secs(1)).is_empty());
}

/// Lowers the per-instance inotify queue for instances created while it lives (the kernel
/// reads the limit at `inotify_init`), and restores it on drop.
struct SmallQueue {
    old: String,
}

const MAX_QUEUED: &str = "/proc/sys/fs/inotify/max_queued_events";

impl SmallQueue {
    fn set(events: u32) -> SmallQueue {
        let old = fs::read_to_string(MAX_QUEUED).unwrap();
        fs::write(MAX_QUEUED, events.to_string()).expect("lowering max_queued_events (needs root)");
        SmallQueue { old }
    }
}

impl Drop for SmallQueue {
    fn drop(&mut self) {
        fs::write(MAX_QUEUED, self.old.trim()).expect("restoring max_queued_events");
    }
}

#[test]
fn queue_overflow_rescans_and_reports_every_file_exactly_once() {
    let tree = dir();
    let sub = tree.path().join("burst");
    fs::create_dir(&sub).unwrap();
    let w = {
        let _small = SmallQueue::set(64);
        Watcher::start(&["--settle", "200ms", "--no-state", &arg(tree.path())])
    };
    // Frozen, the watcher cannot drain its queue: 5,000 uploads (15,000 events) overflow it.
    w.signal("-STOP");
    let mut expected = Vec::new();
    for n in 0..5000 {
        let path = sub.join(format!("f{n:05}.mp4"));
        upload(&path, n.to_string().as_bytes());
        expected.push(canonical(&path));
    }
    w.signal("-CONT");
    let records = w.take(expected.len());
    let mut seen: Vec<String> = records.iter().map(|r| path_of(r).to_owned()).collect();
    seen.sort();
    assert_eq!(seen, expected, "every file exactly once");
    assert!(w.drain_for(Duration::from_secs(1)).is_empty());
    let (_, rest, stderr) = w.stop();
    assert!(rest.is_empty());
    assert!(stderr.contains("inotify event queue overflowed"), "{stderr}");
    assert!(stderr.contains("overflows=1") || stderr.contains("overflows=2"), "{stderr}");
}

#[test]
fn a_restart_reports_uploads_made_while_down_and_nothing_twice() {
    let tree = dir();
    let state = tree.path().join("state/uploads.json");
    let up = tree.path().join("up");
    fs::create_dir(&up).unwrap();
    let args = ["--settle", "200ms", "--state", &arg(&state), &arg(&up)];
    upload(&up.join("before.mp4"), b"old");
    let w = Watcher::start(&args);
    assert_eq!(path_of(&w.next()), canonical(&up.join("before.mp4")));
    upload(&up.join("kept.mp4"), b"kept");
    assert_eq!(path_of(&w.next()), canonical(&up.join("kept.mp4")));
    let (status, _, _) = w.stop();
    assert_eq!(status.code(), Some(0));

    // While down: a new upload, and a new upload replacing one under the same name.
    upload(&up.join("while-down.mp4"), b"new");
    fs::remove_file(up.join("before.mp4")).unwrap();
    upload(&up.join("before.mp4"), b"replaced, longer");

    let w = Watcher::start(&args);
    let mut records: Vec<(String, u64, String)> = w
        .take(2)
        .iter()
        .map(|r| {
            (
                path_of(r).to_owned(),
                r["size"].as_u64().unwrap(),
                r["via"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    records.sort();
    assert_eq!(
        records,
        [
            (canonical(&up.join("before.mp4")), 16, "scan".to_owned()),
            (canonical(&up.join("while-down.mp4")), 3, "scan".to_owned())
        ]
    );
    assert!(w.drain_for(Duration::from_secs(1)).is_empty(), "kept.mp4 was reported before");
    w.stop();
}

#[test]
fn once_reports_complete_files_and_exits() {
    let tree = dir();
    let state = tree.path().join("s.json");
    let up = tree.path().join("up");
    fs::create_dir_all(up.join("deep/er")).unwrap();
    upload(&up.join("deep/er/a.wmv"), b"a");
    upload(&up.join("b.mpg"), b"bb");
    upload(&up.join("c.txt"), b"c");
    let run = |extra: &[&str]| {
        let mut args = vec!["--once", "--settle", "200ms", "--state", state.to_str().unwrap()];
        args.extend_from_slice(extra);
        args.push(up.to_str().unwrap());
        common::Watcher::spawn(&args).finish()
    };
    let (status, records, _) = run(&[]);
    assert_eq!(status.code(), Some(0));
    let mut paths: Vec<&str> = records.iter().map(path_of).collect();
    paths.sort();
    assert_eq!(paths, [canonical(&up.join("b.mpg")), canonical(&up.join("deep/er/a.wmv"))]);
    let (status, records, _) = run(&[]);
    assert_eq!(status.code(), Some(0));
    assert!(records.is_empty(), "a second run reports nothing again: {records:?}");
}

#[test]
fn skip_existing_takes_a_first_runs_files_as_reported() {
    let tree = dir();
    let state = tree.path().join("s.json");
    let up = tree.path().join("up");
    fs::create_dir(&up).unwrap();
    upload(&up.join("old.mp4"), b"old");
    let w = Watcher::start(&[
        "--skip-existing",
        "--settle",
        "100ms",
        "--state",
        &arg(&state),
        &arg(&up),
    ]);
    upload(&up.join("new.mp4"), b"new");
    assert_eq!(path_of(&w.next()), canonical(&up.join("new.mp4")));
    assert!(w.drain_for(Duration::from_millis(500)).is_empty());
}

#[test]
fn nasty_names_never_crash_and_non_utf8_names_become_error_records() {
    let tree = dir();
    let w = Watcher::start(&["--settle", "100ms", "--no-state", &arg(tree.path())]);
    let raw = std::ffi::OsStr::from_bytes(b"caf\xe9.mp4");
    upload(&tree.path().join(raw), b"latin-1 name");
    let error = w.next();
    assert_eq!(error["kind"], "upload");
    assert_eq!(error["error"]["tool"], "watch-uploads");
    assert!(error["error"]["message"].as_str().unwrap().contains("caf\u{fffd}.mp4"), "{error}");
    let names =
        ["a b.mp4", "quote\"d.mp4", "new\nline.mp4", "-rf.mp4", "$(touch x).mp4", "é ü.mp4"];
    for name in names {
        upload(&tree.path().join(name), name.as_bytes());
    }
    let mut reported: Vec<String> =
        w.take(names.len()).iter().map(|r| path_of(r).to_owned()).collect();
    reported.sort();
    let mut expected: Vec<String> = names.iter().map(|n| canonical(&tree.path().join(n))).collect();
    expected.sort();
    assert_eq!(reported, expected);
    assert!(!tree.path().join("x").exists());
    let (status, _, _) = w.stop();
    assert_eq!(status.code(), Some(1), "an error record makes the exit status 1");
}

#[test]
fn unknown_owner_gives_null_user_and_one_warning() {
    let tree = dir();
    let users = tree.path().join("users.json");
    fs::write(&users, r#"[{"login":"root","name":"Root","email":"root@example.org"}]"#).unwrap();
    let up = tree.path().join("up");
    fs::create_dir(&up).unwrap();
    let w =
        Watcher::start(&["--settle", "100ms", "--no-state", "--users", &arg(&users), &arg(&up)]);
    upload(&up.join("mine.mp4"), b"root's");
    let mine = w.next();
    assert_eq!(mine["user"], json!({"login":"root","name":"Root","email":"root@example.org"}));
    for n in 0..2 {
        let path = up.join(format!("stranger{n}.tmp"));
        upload(&path, b"nobody's");
        std::os::unix::fs::chown(&path, Some(4_000_123), Some(4_000_123)).unwrap();
        fs::rename(&path, up.join(format!("stranger{n}.mp4"))).unwrap();
        let record = w.next();
        assert_eq!(record["user"], Value::Null);
    }
    let (status, _, stderr) = w.stop();
    assert_eq!(status.code(), Some(0));
    assert_eq!(stderr.matches("uid 4000123 has no passwd entry").count(), 1, "{stderr}");
}

#[test]
fn owner_from_path_component_with_a_csv_users_file() {
    let tree = dir();
    let users = tree.path().join("users.csv");
    fs::write(&users, "login,name,email\nann,Ann Example,ann@example.org\n").unwrap();
    let up = tree.path().join("up");
    fs::create_dir_all(up.join("ann/videos")).unwrap();
    let w = Watcher::start(&[
        "--settle",
        "100ms",
        "--no-state",
        "--users",
        &arg(&users),
        "--owner-from",
        "path:1",
        &arg(&up),
    ]);
    upload(&up.join("ann/videos/x.mp4"), b"x");
    assert_eq!(
        w.next()["user"],
        json!({"login":"ann","name":"Ann Example","email":"ann@example.org"})
    );
}

#[test]
fn deletes_are_reported_and_sanitized_names_never_clobber() {
    let tree = dir();
    let w = Watcher::start(&[
        "--settle",
        "100ms",
        "--no-state",
        "--deletes",
        "--sanitize-names",
        &arg(tree.path()),
    ]);
    upload(&tree.path().join("my_clip.mp4"), b"already here");
    assert_eq!(path_of(&w.next()), canonical(&tree.path().join("my_clip.mp4")));
    upload(&tree.path().join("my clip.mp4"), b"with a space");
    let renamed = w.next();
    assert_eq!(path_of(&renamed), canonical(&tree.path().join("my_clip-1.mp4")));
    assert_eq!(fs::read(tree.path().join("my_clip.mp4")).unwrap(), b"already here");
    assert_eq!(fs::read(tree.path().join("my_clip-1.mp4")).unwrap(), b"with a space");
    assert!(
        w.drain_for(Duration::from_millis(500)).is_empty(),
        "the rename is neither an upload nor a delete"
    );
    fs::remove_file(tree.path().join("my_clip.mp4")).unwrap();
    let deleted = w.next();
    assert_eq!(deleted["kind"], "delete");
    assert_eq!(path_of(&deleted), canonical(&tree.path().join("my_clip.mp4")));
}

#[test]
fn poll_mode_finds_files_without_inotify() {
    let tree = dir();
    let w = common::Watcher::spawn(&[
        "--poll",
        "200ms",
        "--settle",
        "0",
        "--no-state",
        &arg(tree.path()),
    ]);
    w.wait_stderr("scanning ");
    fs::create_dir(tree.path().join("new")).unwrap();
    upload(&tree.path().join("new/p.mp4"), b"polled");
    let record = w.next();
    assert_eq!(record["via"], "poll");
    assert_eq!(path_of(&record), canonical(&tree.path().join("new/p.mp4")));
    assert!(w.drain_for(Duration::from_millis(800)).is_empty());
}

#[test]
fn missing_or_unusable_dirs_are_clear_errors() {
    let tree = dir();
    let missing = tree.path().join("nope");
    let (status, _, stderr) =
        common::Watcher::spawn(&["--no-state", missing.to_str().unwrap()]).finish();
    assert_eq!(status.code(), Some(66), "{stderr}");
    assert!(stderr.contains("watch-uploads: error: cannot watch"), "{stderr}");
    let file = tree.path().join("f");
    fs::write(&file, b"").unwrap();
    let (status, _, _) = common::Watcher::spawn(&["--no-state", file.to_str().unwrap()]).finish();
    assert_eq!(status.code(), Some(66));
}

#[test]
fn symlinks_are_not_followed_out_of_the_tree() {
    let outside = dir();
    upload(&outside.path().join("secret.mp4"), b"outside");
    let tree = dir();
    std::os::unix::fs::symlink(outside.path(), tree.path().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret.mp4"), tree.path().join("l.mp4"))
        .unwrap();
    let w = Watcher::start(&["--settle", "100ms", "--no-state", &arg(tree.path())]);
    upload(&outside.path().join("later.mp4"), b"outside too");
    upload(&tree.path().join("inside.mp4"), b"inside");
    assert_eq!(path_of(&w.next()), canonical(&tree.path().join("inside.mp4")));
    assert!(w.drain_for(Duration::from_millis(500)).is_empty());
}

/// watch-uploads in a user namespace of its own whose inotify watch limit is `limit`
/// (`/proc/sys/user/max_inotify_watches` is per namespace), so other processes keep theirs.
fn with_watch_limit(limit: u32, args: &[&str]) -> Watcher {
    let mut command = std::process::Command::new("unshare");
    command
        .args(["--user", "--map-root-user", "sh", "-c"])
        .arg(format!("echo {limit} > /proc/sys/user/max_inotify_watches && exec \"$0\" -v \"$@\""))
        .arg(common::BIN)
        .args(args);
    Watcher::spawn_command(command)
}

#[test]
fn the_inotify_watch_limit_is_named_at_start_and_survived_later() {
    let tree = dir();
    for sub in ["a", "b", "c"] {
        fs::create_dir(tree.path().join(sub)).unwrap();
    }
    let (status, _, stderr) = with_watch_limit(2, &["--no-state", &arg(tree.path())]).finish();
    assert_eq!(status.code(), Some(75), "{stderr}");
    assert!(stderr.contains("fs.inotify.max_user_watches"), "{stderr}");

    let w = with_watch_limit(
        5,
        &["--no-state", "--settle", "100ms", "--rescan-every", "1s", &arg(tree.path())],
    );
    w.wait_stderr("watching 4 folders");
    fs::create_dir(tree.path().join("d")).unwrap();
    fs::create_dir(tree.path().join("e")).unwrap();
    w.wait_stderr("fs.inotify.max_user_watches");
    upload(&tree.path().join("e/late.mp4"), b"found by a rescan");
    let record = w.next();
    assert_eq!(path_of(&record), canonical(&tree.path().join("e/late.mp4")));
    assert_eq!(record["via"], "scan");
}

#[test]
fn a_corrupt_state_file_is_refused_until_reset() {
    let tree = dir();
    let state = tree.path().join("s.json");
    let up = tree.path().join("up");
    fs::create_dir(&up).unwrap();
    upload(&up.join("a.mp4"), b"a");
    fs::write(&state, b"{not json").unwrap();
    let once = |extra: &str| {
        let mut args = vec![
            "--once",
            "--settle",
            "0",
            "--state",
            state.to_str().unwrap(),
            up.to_str().unwrap(),
        ];
        if !extra.is_empty() {
            args.insert(0, extra);
        }
        common::Watcher::spawn(&args).finish()
    };
    let (status, records, stderr) = once("");
    assert_eq!(status.code(), Some(65), "{stderr}");
    assert!(stderr.contains("--reset"), "{stderr}");
    assert!(records.is_empty());
    let (status, records, _) = once("--reset");
    assert_eq!(status.code(), Some(0));
    assert_eq!(records.len(), 1);
    assert_eq!(path_of(&records[0]), canonical(&up.join("a.mp4")));
}
