//! The zip checks and the repack, on local zips built by the tests (`--zip`).

mod support;

use std::fs;
use std::process::Command;

use chrono::{Local, Utc};
use support::{
    Entry, Scratch, Stamp, dump, extract, listing, make_symlink_zip, make_zip, path_str, run,
    sha256_hex,
};

#[test]
fn fresh_dump_becomes_a_dated_tgz_equal_to_the_dump() {
    let s = Scratch::new();
    let data = dump(3 << 20, 1);
    let zip = s.path("nightly.zip");
    make_zip(
        &zip,
        &[Entry::new("readme.txt", b"hello"), Entry::new("backup/db-20261123.sql", &data)],
    );
    let run =
        run(&["--zip", path_str(&zip), "--member", "backup/*.sql", "--out-dir", &s.out_str()], &[]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    let expected =
        s.out().canonicalize().unwrap().join(Local::now().format("%Y%m%d.tgz").to_string());
    let record = run.record();
    assert_eq!(record["kind"], "archive");
    assert_eq!(record["path"], path_str(&expected));
    let archive = &record["archive"];
    assert_eq!(archive["status"], "created");
    assert_eq!(archive["source"], path_str(&zip));
    assert_eq!(archive["member"], "backup/db-20261123.sql");
    assert_eq!(archive["bytes_in"], data.len());
    assert_eq!(archive["bytes_out"], fs::metadata(&expected).unwrap().len());
    assert_eq!(archive["sha256"], sha256_hex(&expected));
    assert!(archive["seconds"].as_f64().unwrap() >= 0.0);
    let mtime =
        chrono::DateTime::parse_from_rfc3339(archive["member_mtime"].as_str().unwrap()).unwrap();
    assert!((Utc::now() - mtime.to_utc()).num_seconds().abs() < 60, "{mtime}");

    let extracted = extract(&expected);
    assert_eq!(
        listing(extracted.path()),
        ["db-20261123.sql"],
        "the dump alone, under its own name"
    );
    assert!(fs::read(extracted.path().join("db-20261123.sql")).unwrap() == data, "byte for byte");
    assert_eq!(
        listing(&s.out()),
        [expected.file_name().unwrap().to_str().unwrap()],
        "no temp file"
    );
}

#[test]
fn archive_name_follows_the_pattern_and_keeps_the_member_mtime() {
    let s = Scratch::new();
    let data = dump(10_000, 2);
    let zip = s.path("x.zip");
    let then = Local::now() - chrono::Duration::hours(1);
    let stamp = Stamp::Extended { dos: then.naive_local(), utc: then };
    make_zip(&zip, &[Entry::new("dump.sql", &data).stamped(stamp)]);
    let run = run(
        &[
            "--zip",
            path_str(&zip),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--name",
            "db-%F.tar.gz",
            "--max-age",
            "2h",
            "--level",
            "9",
            "--threads",
            "1",
        ],
        &[],
    );
    assert_eq!(run.code, Some(0), "{run:#?}");
    let name = Local::now().format("db-%F.tar.gz").to_string();
    assert_eq!(listing(&s.out()), std::slice::from_ref(&name));
    let tar = Command::new("tar").args(["tvzf"]).arg(s.out().join(&name)).output().unwrap();
    let line = String::from_utf8(tar.stdout).unwrap();
    let then = then.format("%Y-%m-%d %H:%M").to_string();
    assert!(line.contains(&then), "tar keeps the dump's mtime {then}: {line}");
    assert!(line.contains("dump.sql") && line.contains(&data.len().to_string()), "{line}");
}

#[test]
fn stale_dump_gives_a_record_without_path_and_exit_zero() {
    let s = Scratch::new();
    let zip = s.path("x.zip");
    make_zip(&zip, &[Entry::new("dump.sql", b"old data\n").stamped(Stamp::hours_ago(72))]);
    let run =
        run(&["--zip", path_str(&zip), "--member", "dump.sql", "--out-dir", &s.out_str()], &[]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    let record = run.record();
    assert!(record.get("path").is_none(), "{record}");
    assert!(record.get("error").is_none(), "{record}");
    assert_eq!(record["archive"]["status"], "stale");
    assert_eq!(record["archive"]["member"], "dump.sql");
    assert!(record["archive"]["reason"].as_str().unwrap().contains("not today"), "{record}");
    assert_eq!(record["archive"]["member_size"], 9);
    assert!(listing(&s.out()).is_empty());
}

#[test]
fn the_utc_extended_timestamp_wins_over_the_dos_time() {
    let s = Scratch::new();
    let zip = s.path("x.zip");
    let now = Local::now();
    let stamp = Stamp::Extended { dos: now.naive_local(), utc: now - chrono::Duration::days(3) };
    make_zip(&zip, &[Entry::new("dump.sql", b"data\n").stamped(stamp)]);
    let run =
        run(&["--zip", path_str(&zip), "--member", "dump.sql", "--out-dir", &s.out_str()], &[]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.archive()["status"], "stale", "{run:#?}");
}

#[test]
fn the_dos_time_is_local_time() {
    // In a zone five hours behind UTC, a DOS time of "two hours ago, local" is two hours old;
    // read as UTC it would be seven.
    let s = Scratch::new();
    let zip = s.path("x.zip");
    let local_two_hours_ago = (Utc::now() - chrono::Duration::hours(7)).naive_utc();
    make_zip(&zip, &[Entry::new("dump.sql", b"data\n").stamped(Stamp::Dos(local_two_hours_ago))]);
    let args = [
        "--zip",
        path_str(&zip),
        "--member",
        "dump.sql",
        "--out-dir",
        &s.out_str(),
        "--max-age",
        "3h",
    ];
    let run = run(&args, &[("TZ", "EST5")]);
    assert_eq!(run.code, Some(0), "{run:#?}");
    assert_eq!(run.archive()["status"], "created", "{run:#?}");
    assert!(run.archive()["member_mtime"].as_str().unwrap().ends_with("-05:00"), "{run:#?}");
}

#[test]
fn missing_member_is_an_error_record_listing_the_zip() {
    let s = Scratch::new();
    let zip = s.path("x.zip");
    make_zip(&zip, &[Entry::new("a.txt", b"a"), Entry::new("dir/b.csv", b"b")]);
    let run =
        run(&["--zip", path_str(&zip), "--member", "dump.sql", "--out-dir", &s.out_str()], &[]);
    assert_eq!(run.code, Some(65), "{run:#?}");
    let message = run.error();
    assert!(message.contains("no entry named \"dump.sql\""), "{message}");
    assert!(message.contains("a.txt") && message.contains("dir/b.csv"), "{message}");
    assert_eq!(run.record()["error"]["tool"], "archive-dump");
    assert_eq!(run.archive()["status"], "failed");
    assert!(run.stderr.contains("archive-dump: error:"), "{}", run.stderr);
    assert!(listing(&s.out()).is_empty());
}

#[test]
fn a_glob_matching_several_entries_is_refused() {
    let s = Scratch::new();
    let zip = s.path("x.zip");
    make_zip(&zip, &[Entry::new("a.sql", b"a"), Entry::new("b.sql", b"b")]);
    let run = run(&["--zip", path_str(&zip), "--member", "*.sql", "--out-dir", &s.out_str()], &[]);
    assert_eq!(run.code, Some(65), "{run:#?}");
    assert!(run.error().contains("matches 2 entries") && run.error().contains("b.sql"), "{run:#?}");
}

#[test]
fn truncated_or_corrupt_zips_are_clear_errors() {
    let s = Scratch::new();
    let zip = s.path("x.zip");
    make_zip(&zip, &[Entry::new("dump.sql", &dump(200_000, 3))]);
    let bytes = fs::read(&zip).unwrap();
    let truncated = s.path("truncated.zip");
    fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let run1 = run(
        &["--zip", path_str(&truncated), "--member", "dump.sql", "--out-dir", &s.out_str()],
        &[],
    );
    assert_eq!(run1.code, Some(65), "{run1:#?}");
    assert!(run1.error().contains("not a readable zip (truncated or corrupt)"), "{run1:#?}");

    // Intact directory, damaged data: the CRC check at the end of the entry catches it.
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 3;
    damaged[middle] ^= 0xff;
    damaged[middle + 1] ^= 0xff;
    let corrupt = s.path("corrupt.zip");
    fs::write(&corrupt, &damaged).unwrap();
    let run2 =
        run(&["--zip", path_str(&corrupt), "--member", "dump.sql", "--out-dir", &s.out_str()], &[]);
    assert_eq!(run2.code, Some(65), "{run2:#?}");
    assert!(run2.error().contains("reading \"dump.sql\" from the zip failed"), "{run2:#?}");
    assert!(listing(&s.out()).is_empty(), "no partial archive, no temp file");
}

#[test]
fn zip_slip_absolute_and_symlink_entries_are_refused() {
    let s = Scratch::new();
    for (i, name) in
        ["../../etc/cron.d/dump.sql", "/etc/dump.sql", "backup/../../dump.sql"].iter().enumerate()
    {
        let zip = s.path(&format!("slip{i}.zip"));
        make_zip(&zip, &[Entry::new(name, b"evil")]);
        let run = run(
            &["--zip", path_str(&zip), "--member", "*dump.sql", "--out-dir", &s.out_str()],
            &[],
        );
        assert_eq!(run.code, Some(65), "{name}: {run:#?}");
        assert!(run.error().contains("zip-slip"), "{name}: {run:#?}");
    }
    let zip = s.path("link.zip");
    make_symlink_zip(&zip, "dump.sql", "/etc/shadow");
    let run =
        run(&["--zip", path_str(&zip), "--member", "dump.sql", "--out-dir", &s.out_str()], &[]);
    assert_eq!(run.code, Some(65), "{run:#?}");
    assert!(run.error().contains("symbolic link"), "{run:#?}");
    assert!(listing(&s.out()).is_empty());
    assert!(!s.dir.path().parent().unwrap().join("dump.sql").exists());
}

#[test]
fn a_zip_bomb_stops_at_the_cap() {
    let s = Scratch::new();
    let zeros = vec![0u8; 64 << 20];
    let zip = s.path("bomb.zip");
    make_zip(&zip, &[Entry::new("dump.sql", &zeros)]);
    assert!(fs::metadata(&zip).unwrap().len() < 1 << 20, "a small zip");
    let run1 = run(
        &[
            "--zip",
            path_str(&zip),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--max-bytes",
            "8M",
        ],
        &[],
    );
    assert_eq!(run1.code, Some(65), "{run1:#?}");
    assert!(run1.error().contains("more than --max-bytes"), "{run1:#?}");

    // A header that understates the size: reading stops right after the declared bytes.
    let mut bytes = fs::read(&zip).unwrap();
    let declared: u32 = 1 << 20;
    let local = find(&bytes, b"PK\x03\x04");
    bytes[local + 22..local + 26].copy_from_slice(&declared.to_le_bytes());
    let central = find(&bytes, b"PK\x01\x02");
    bytes[central + 24..central + 28].copy_from_slice(&declared.to_le_bytes());
    let lying = s.path("lying.zip");
    fs::write(&lying, &bytes).unwrap();
    let run2 = run(
        &[
            "--zip",
            path_str(&lying),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--max-bytes",
            "8M",
        ],
        &[],
    );
    assert_eq!(run2.code, Some(65), "{run2:#?}");
    assert!(run2.error().contains("more than the 1048576 bytes its header declares"), "{run2:#?}");
    assert!(listing(&s.out()).is_empty());
}

fn find(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len()).position(|w| w == needle).expect("signature present")
}

#[test]
fn encrypted_entries_are_refused() {
    let s = Scratch::new();
    fs::write(s.path("dump.sql"), dump(5_000, 4)).unwrap();
    let zip = s.path("secret.zip");
    let status = Command::new("zip")
        .current_dir(s.dir.path())
        .args(["-q", "-P", "s3cret", "secret.zip", "dump.sql"])
        .status()
        .expect("the zip program (Debian package zip) is installed");
    assert!(status.success());
    let run =
        run(&["--zip", path_str(&zip), "--member", "dump.sql", "--out-dir", &s.out_str()], &[]);
    assert_eq!(run.code, Some(65), "{run:#?}");
    assert!(run.error().contains("encrypted"), "{run:#?}");
    assert!(listing(&s.out()).is_empty());
}

#[test]
fn an_existing_archive_is_kept_unless_overwrite() {
    let s = Scratch::new();
    let zip = s.path("x.zip");
    let data = dump(50_000, 5);
    make_zip(&zip, &[Entry::new("dump.sql", &data)]);
    let existing = s.out().join("out.tgz");
    fs::write(&existing, b"yesterday's run").unwrap();
    let args = [
        "--zip",
        path_str(&zip),
        "--member",
        "dump.sql",
        "--out-dir",
        &s.out_str(),
        "--name",
        "out.tgz",
    ];
    let run1 = run(&args, &[]);
    assert_eq!(run1.code, Some(74), "{run1:#?}");
    assert!(run1.error().contains("already exists; pass --overwrite"), "{run1:#?}");
    assert_eq!(fs::read(&existing).unwrap(), b"yesterday's run");
    assert_eq!(listing(&s.out()), ["out.tgz"]);

    let mut with_flag = args.to_vec();
    with_flag.push("--overwrite");
    let run2 = run(&with_flag, &[]);
    assert_eq!(run2.code, Some(0), "{run2:#?}");
    let extracted = extract(&existing);
    assert!(fs::read(extracted.path().join("dump.sql")).unwrap() == data);
    assert_eq!(listing(&s.out()), ["out.tgz"]);
}

#[test]
fn usage_mistakes_are_reported_before_any_work() {
    let s = Scratch::new();
    let zip = s.path("x.zip");
    make_zip(&zip, &[Entry::new("dump.sql", b"x")]);
    let bad_name = run(
        &[
            "--zip",
            path_str(&zip),
            "--member",
            "dump.sql",
            "--out-dir",
            &s.out_str(),
            "--name",
            "../escape.tgz",
        ],
        &[],
    );
    assert_eq!(bad_name.code, Some(2), "{bad_name:#?}");
    let missing_dir = run(
        &["--zip", path_str(&zip), "--member", "dump.sql", "--out-dir", path_str(&s.path("nope"))],
        &[],
    );
    assert_eq!(missing_dir.code, Some(66), "{missing_dir:#?}");
    let no_source = run(&["--member", "dump.sql", "--out-dir", &s.out_str()], &[]);
    assert_eq!(no_source.code, Some(2), "{no_source:#?}");
    assert!(listing(&s.out()).is_empty());
}
