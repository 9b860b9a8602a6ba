//! The binary on hand-written fixtures, with exact expected records (compared as JSON values).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
        .display()
        .to_string()
}

struct Run {
    records: Vec<Value>,
    stdout: String,
    stderr: String,
    code: i32,
}

fn run(args: &[&str], stdin: Option<&[u8]>) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_origin-tokens"))
        .args(args)
        .env_remove("TZ")
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("origin-tokens starts");
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input).unwrap();
    }
    let output = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    let records = if args.contains(&"--format") {
        Vec::new()
    } else {
        stdout.lines().map(|l| serde_json::from_str(l).expect("a JSON line")).collect()
    };
    Run {
        records,
        stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        code: output.status.code().unwrap_or(-1),
    }
}

/// The records with only the named fields (the `ts` stamp and fields a test does not look at
/// are left out).
fn pick(records: &[Value], fields: &[&str]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            let picked: serde_json::Map<String, Value> = fields
                .iter()
                .map(|f| ((*f).to_owned(), r.get(*f).cloned().unwrap_or(Value::Null)))
                .collect();
            Value::Object(picked)
        })
        .collect()
}

const SESSION: &[&str] =
    &["user", "host", "feature", "start", "end", "seconds", "licenses", "checkouts", "closed_by"];

/// A session of feature Origin: (start, end), seconds, (licenses, checkouts), closed_by.
fn session(
    user: &str,
    host: &str,
    span: (&str, Option<&str>),
    seconds: i64,
    counts: (u32, u32),
    closed_by: &str,
) -> Value {
    json!({"user": user, "host": host, "feature": "Origin", "start": span.0, "end": span.1, "seconds": seconds,
           "licenses": counts.0, "checkouts": counts.1, "closed_by": closed_by})
}

fn day_sessions() -> Vec<Value> {
    let t = |s: &str| format!("2026-11-{s}+00:00");
    vec![
        json!({"user": "alice", "host": "PC-01", "feature": "Origin", "start": t("23T09:03:12"), "end": t("23T10:00:00"),
               "seconds": 3408, "licenses": 1, "checkouts": 1, "closed_by": "in"}),
        json!({"user": "alice", "host": "PC-01", "feature": "OriginPro", "start": t("23T09:30:00"), "end": t("23T10:30:00"),
               "seconds": 3600, "licenses": 1, "checkouts": 1, "closed_by": "in"}),
        session("bob", "PC-03", (&t("23T11:00:05"), Some(&t("23T12:00:00"))), 3595, (1, 1), "in"),
        session("bob", "PC-02", (&t("23T11:00:00"), Some(&t("23T12:30:00"))), 5400, (2, 2), "in"),
        session(
            "José da Silva",
            "LAB-7",
            (&t("23T13:00:00"), Some(&t("23T13:20:00"))),
            1200,
            (3, 1),
            "in",
        ),
        session(
            "carol",
            "PC-04",
            (&t("23T14:00:03"), Some(&t("23T14:10:00"))),
            597,
            (1, 1),
            "inactive",
        ),
        session("dave", "PC-05", (&t("23T15:00:00"), Some(&t("23T15:30:00"))), 1800, (1, 1), "in"),
        session("erin", "PC-06", (&t("23T23:30:00"), Some(&t("24T00:30:00"))), 3600, (1, 1), "in"),
        session(
            "frank",
            "PC-07",
            (&t("24T01:00:00"), Some(&t("24T02:00:00"))),
            3600,
            (1, 1),
            "restart",
        ),
        session(
            "gina",
            "PC-08",
            (&t("24T01:05:00"), Some(&t("24T02:00:00"))),
            3300,
            (1, 1),
            "restart",
        ),
        session(
            "hank",
            "PC-09",
            (&t("24T03:00:00"), Some(&t("24T04:00:00"))),
            3600,
            (1, 1),
            "shutdown",
        ),
        session("ivy", "PC-10", (&t("24T06:30:00"), None), 1800, (1, 1), "open"),
    ]
}

#[test]
fn sessions_follow_every_rule_of_the_day_fixture() {
    let out = run(&["sessions", "--tz", "UTC", &fixture("day.log")], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(out.records.iter().all(|r| r["kind"] == "session" && r["daemon"] == "orglab"));
    assert_eq!(pick(&out.records, SESSION), day_sessions());
}

#[test]
fn bom_crlf_and_tabs_parse_like_plain_lines() {
    let out = run(&["sessions", "--tz", "UTC", &fixture("bom-crlf.log")], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(pick(&out.records, SESSION), day_sessions()[..5].to_vec());
    assert!(!out.stderr.contains("not debug-log lines"), "{}", out.stderr);
}

const REPORT: &[&str] = &[
    "period",
    "user",
    "connected_seconds",
    "token_seconds",
    "sessions",
    "peak_licenses",
    "peak_at",
    "denials",
    "transient_denials",
];

/// A report row: [connected, token seconds, sessions, peak, denials, transient denials].
fn row(period: &str, user: &str, n: [i64; 6], peak_at: &str) -> Value {
    json!({"period": period, "user": user, "connected_seconds": n[0], "token_seconds": n[1], "sessions": n[2],
           "peak_licenses": n[3], "peak_at": peak_at, "denials": n[4], "transient_denials": n[5]})
}

#[test]
fn report_per_day_is_the_union_of_intervals_with_peaks_and_denials() {
    let out =
        run(&["report", "--by", "user", "--per", "day", "--tz", "UTC", &fixture("day.log")], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let (d1, d2) = ("2026-11-23", "2026-11-24");
    let at = |s: &str| format!("{s}+00:00");
    let expected = vec![
        row(d1, "José da Silva", [1200, 3600, 1, 3, 0, 0], &at("2026-11-23T13:00:00")),
        // Origin 09:03:12-10:00 and OriginPro 09:30-10:30 overlap: 09:03:12-10:30 once.
        row(d1, "alice", [5208, 7008, 2, 2, 0, 0], &at("2026-11-23T09:30:00")),
        // Two OUTs on PC-02 (refcount) and one on PC-03: three licenses at 11:00:10.
        row(d1, "bob", [5400, 10 + 1790 * 2 + 3600 + 3595, 2, 3, 0, 0], &at("2026-11-23T11:00:10")),
        row(d1, "carol", [597, 597, 1, 1, 1, 1], &at("2026-11-23T14:00:03")),
        row(d1, "dave", [1800, 1800, 1, 1, 0, 0], &at("2026-11-23T15:00:00")),
        row(d1, "erin", [1800, 1800, 1, 1, 0, 0], &at("2026-11-23T23:30:00")),
        row(d2, "erin", [1800, 1800, 0, 1, 0, 0], &at("2026-11-24T00:00:00")),
        row(d2, "frank", [3600, 3600, 1, 1, 0, 0], &at("2026-11-24T01:00:00")),
        row(d2, "gina", [3300, 3300, 1, 1, 0, 0], &at("2026-11-24T01:05:00")),
        row(d2, "hank", [3600, 3600, 1, 1, 0, 0], &at("2026-11-24T03:00:00")),
        row(d2, "ivy", [1800, 1800, 1, 1, 0, 0], &at("2026-11-24T06:30:00")),
    ];
    assert_eq!(pick(&out.records, REPORT), expected);
    assert_eq!(out.records[1]["connected_hours"], json!(1.45));
}

#[test]
fn report_by_feature_gives_the_peak_of_concurrent_licenses_and_when() {
    let out = run(
        &["report", "--by", "feature", "--tz", "UTC", "--until", "2026-11-24", &fixture("day.log")],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let fields =
        ["feature", "peak_licenses", "peak_at", "sessions", "denials", "transient_denials"];
    assert_eq!(
        pick(&out.records, &fields),
        vec![
            json!({"feature": "Origin", "peak_licenses": 3, "peak_at": "2026-11-23T11:00:10+00:00", "sessions": 7,
                   "denials": 1, "transient_denials": 1}),
            json!({"feature": "OriginPro", "peak_licenses": 1, "peak_at": "2026-11-23T09:30:00+00:00", "sessions": 1,
                   "denials": 0, "transient_denials": 0}),
        ]
    );
    // --until clips erin's session at midnight.
    let origin = &out.records[0];
    assert_eq!(origin["connected_seconds"], json!(3408 + 5400 + 1200 + 597 + 1800 + 1800));
    assert!(out.records.iter().all(|r| r.get("period").is_none()));
}

#[test]
fn events_skip_noise_and_carry_counts_reasons_and_lifecycle() {
    let out = run(&["events", "--tz", "UTC", &fixture("day.log")], None);
    assert_eq!(out.code, 0);
    let tokens: Vec<&Value> = out.records.iter().filter(|r| r["kind"] == "token").collect();
    assert_eq!(tokens.len(), 25);
    assert!(tokens.iter().all(|r| r["user"] != "mallory"), "SERVER-OUT is not a checkout");
    let jose = tokens.iter().find(|r| r["user"] == "José da Silva").unwrap();
    assert_eq!(
        pick(&[(*jose).clone()], &["event", "time", "host", "licenses", "reason"]),
        vec![
            json!({"event": "out", "time": "2026-11-23T13:00:00+00:00", "host": "LAB-7", "licenses": 3, "reason": null})
        ]
    );
    let denied = tokens.iter().find(|r| r["event"] == "denied").unwrap();
    assert_eq!(denied["reason"], "Licensed number of users already reached. (-4,342)");
    let server: Vec<Value> =
        out.records.iter().filter(|r| r["kind"] == "server").cloned().collect();
    let events: Vec<&str> = server.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(
        events,
        [
            "lmgrd_start",
            "vendor_start",
            "vendor_banner",
            "reread",
            "port",
            "reread",
            "vendor_restart",
            "vendor_banner",
            "lmgrd_exit",
            "lmgrd_start",
            "vendor_start",
            "vendor_banner"
        ]
    );
    assert_eq!(server[6]["closed_sessions"], 2, "REStarted closes frank's and gina's sessions");
    assert!(out.stderr.contains("day.log:20"), "the malformed line is named: {}", out.stderr);
}

#[test]
fn gz_and_plain_files_given_out_of_order_are_read_by_first_date() {
    let out =
        run(&["sessions", "--tz", "UTC", &fixture("rot-2.log"), &fixture("rot-1.log.gz")], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        pick(&out.records, &["user", "start", "end", "seconds"]),
        vec![
            json!({"user": "alice", "start": "2026-11-23T09:00:00+00:00", "end": "2026-11-23T17:00:00+00:00", "seconds": 28800}),
            json!({"user": "bob", "start": "2026-11-23T23:50:00+00:00", "end": "2026-11-24T00:10:00+00:00", "seconds": 1200}),
            json!({"user": "alice", "start": "2026-11-24T09:00:00+00:00", "end": "2026-11-24T09:30:00+00:00", "seconds": 1800}),
        ]
    );
}

#[test]
fn a_disagreeing_timestamp_resyncs_the_date_with_a_warning() {
    let out = run(&["sessions", "--tz", "UTC", &fixture("resync.log")], None);
    assert_eq!(out.code, 0);
    assert_eq!(
        pick(&out.records, &["user", "start", "end"]),
        vec![
            json!({"user": "alice", "start": "2026-03-01T23:00:00+00:00", "end": "2026-03-02T01:00:00+00:00"}),
            json!({"user": "bob", "start": "2026-03-04T05:00:00+00:00", "end": "2026-03-04T06:00:00+00:00"}),
        ]
    );
    assert!(
        out.stderr.contains("TIMESTAMP says 2026-03-04 but the running date was 2026-03-02"),
        "{}",
        out.stderr
    );
}

#[test]
fn start_date_fold_case_and_zone() {
    let log = fixture("undated.log");
    let out = run(&["sessions", "--tz", "UTC", &log], None);
    assert!(out.records.is_empty());
    assert!(out.stderr.contains("4 lines came before the first date"), "{}", out.stderr);

    let out = run(
        &["report", "--start-date", "2026-11-20", "--tz", "Europe/Berlin", "--fold-case", &log],
        None,
    );
    assert_eq!(
        pick(&out.records, &["user", "connected_seconds", "sessions", "peak_licenses", "peak_at"]),
        vec![
            json!({"user": "alice", "connected_seconds": 21 * 3600, "sessions": 2, "peak_licenses": 2,
                    "peak_at": "2026-11-20T10:00:00+01:00"})
        ]
    );
    let out = run(&["report", "--start-date", "2026-11-20", "--tz", "UTC", &log], None);
    let users: Vec<&str> = out.records.iter().map(|r| r["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["Alice", "alice"], "without --fold-case the names stay apart");
}

#[test]
fn filters_by_user_feature_and_time() {
    let log = fixture("day.log");
    let out = run(&["sessions", "--tz", "UTC", "--user", "bob", "--user", "erin", &log], None);
    let users: Vec<&str> = out.records.iter().map(|r| r["user"].as_str().unwrap()).collect();
    assert_eq!(users, ["bob", "bob", "erin"]);
    let out = run(&["events", "--tz", "UTC", "--feature", "OriginPro", &log], None);
    let tokens: Vec<&Value> = out.records.iter().filter(|r| r["kind"] == "token").collect();
    assert_eq!(tokens.len(), 2);
    let out = run(
        &[
            "events",
            "--tz",
            "UTC",
            "--since",
            "2026-11-23T14:00:00Z",
            "--until",
            "2026-11-23 14:10",
            &log,
        ],
        None,
    );
    let events: Vec<&str> = out.records.iter().map(|r| r["event"].as_str().unwrap()).collect();
    assert_eq!(events, ["denied", "out"]);
}

#[test]
fn connected_at_the_end_and_at_a_time() {
    let log = fixture("day.log");
    let out = run(&["connected", "--tz", "UTC", &log], None);
    assert_eq!(
        pick(&out.records, &["user", "host", "since", "seconds", "licenses", "checkouts"]),
        vec![
            json!({"user": "ivy", "host": "PC-10", "since": "2026-11-24T06:30:00+00:00", "seconds": 1800,
                    "licenses": 1, "checkouts": 1})
        ]
    );
    let out = run(&["connected", "--tz", "UTC", "--at", "2026-11-23T11:15:00Z", &log], None);
    assert_eq!(
        pick(&out.records, &["user", "host", "since", "seconds", "licenses", "checkouts"]),
        vec![
            json!({"user": "bob", "host": "PC-02", "since": "2026-11-23T11:00:00+00:00", "seconds": 900, "licenses": 2, "checkouts": 2}),
            json!({"user": "bob", "host": "PC-03", "since": "2026-11-23T11:00:05+00:00", "seconds": 895, "licenses": 1, "checkouts": 1}),
        ]
    );
}

#[test]
fn log_tail_line_records_on_stdin() {
    let text = std::fs::read_to_string(fixture("day.log")).unwrap();
    let mut input = String::new();
    for line in text.lines() {
        input.push_str(&json!({"kind": "line", "ts": "2026-11-24T07:00:00Z", "path": "/var/log/orglabdebug.log", "line": line}).to_string());
        input.push('\n');
    }
    input.push_str("{\"kind\":\"line\"}\n");
    let out = run(&["sessions", "--tz", "UTC"], Some(input.as_bytes()));
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(pick(&out.records, SESSION), day_sessions());
    assert!(out.stderr.contains("2 of 48 lines were not debug-log lines"), "{}", out.stderr);
}

#[test]
fn report_refuses_state() {
    let out = run(&["report", "--state", "/nonexistent/state.json", &fixture("day.log")], None);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("--state is for events, sessions and connected"), "{}", out.stderr);
}

#[test]
fn malformed_lines_fail_only_with_strict() {
    let out = run(&["sessions", "--tz", "UTC", "--strict", &fixture("day.log")], None);
    assert_eq!(out.code, 65);
    assert_eq!(out.records.len(), 12, "the records are still written");
}

#[test]
fn state_carries_the_date_and_open_sessions_between_runs() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let state = state.to_str().unwrap();
    let text = std::fs::read_to_string(fixture("day.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (first, second) = lines.split_at(32);
    let first = run(
        &["sessions", "--tz", "UTC", "--state", state],
        Some((first.join("\n") + "\n").as_bytes()),
    );
    assert_eq!(first.code, 0, "{}", first.stderr);
    assert_eq!(first.records.len(), 7, "erin's session is still open: {:?}", first.records);
    let second = run(
        &["sessions", "--tz", "UTC", "--state", state],
        Some((second.join("\n") + "\n").as_bytes()),
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    let mut all = first.records.clone();
    all.extend(second.records.iter().cloned());
    assert_eq!(pick(&all, SESSION), day_sessions()[..11].to_vec(), "ivy stays open in the state");
}

#[test]
fn snapshots_and_dhcpd_give_ips_and_pc_names() {
    let out = run(
        &[
            "events",
            "--tz",
            "UTC",
            "--snapshots",
            &fixture("snapshots.txt"),
            "--dhcpd",
            &fixture("dhcpd.conf"),
            &fixture("dhcpd.leases"),
            "--",
            &fixture("ips.log"),
        ],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let outs: Vec<Value> = out.records.iter().filter(|r| r["event"] == "out").cloned().collect();
    assert_eq!(
        pick(&outs, &["user", "ip", "ip_confidence", "ip_candidates", "pc"]),
        vec![
            json!({"user": "alice", "ip": "10.0.0.11", "ip_confidence": "unique", "ip_candidates": [],
                   "pc": {"name": "pc-alice", "mac": "00:1a:2b:03:04:05"}}),
            json!({"user": "bob", "ip": null, "ip_confidence": "ambiguous", "ip_candidates": ["10.0.0.12", "10.0.0.13"], "pc": null}),
            json!({"user": "carol", "ip": null, "ip_confidence": "ambiguous", "ip_candidates": ["10.0.0.12", "10.0.0.13"], "pc": null}),
            json!({"user": "dave", "ip": "10.0.0.14", "ip_confidence": "unique", "ip_candidates": [],
                   "pc": {"name": "dave-laptop", "mac": "aa:bb:cc:00:00:02"}}),
        ]
    );
    let out = run(
        &[
            "connected",
            "--tz",
            "UTC",
            "--snapshots",
            &fixture("snapshots.txt"),
            &fixture("ips.log"),
        ],
        None,
    );
    let ips: Vec<&Value> = out.records.iter().map(|r| &r["ip"]).collect();
    assert_eq!(ips, [&Value::Null, &Value::Null, &json!("10.0.0.14")]);
}

#[test]
fn csv_table_and_xlsx_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let xlsx = dir.path().join("report.xlsx");
    let log = fixture("day.log");
    let out = run(
        &["report", "--tz", "UTC", "--format", "csv", "--xlsx", xlsx.to_str().unwrap(), &log],
        None,
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "period,user,connected_hours,token_hours,sessions,peak_licenses,peak_at,denials,transient_denials"
    );
    assert_eq!(lines[2], ",alice,1.45,1.95,2,2,2026-11-23T09:30:00+00:00,0,0");
    assert_eq!(lines.len(), 11);
    let bytes = std::fs::read(&xlsx).unwrap();
    assert!(bytes.starts_with(b"PK\x03\x04"), "an xlsx file is a zip archive");
    let ods = dir.path().join("report.ods");
    let out = run(&["report", "--tz", "UTC", "--ods", ods.to_str().unwrap(), &log], None);
    assert_eq!(out.records.len(), 10);
    let mut archive = zip::ZipArchive::new(std::fs::File::open(&ods).unwrap()).unwrap();
    assert_eq!(archive.by_index(0).unwrap().name(), "mimetype", "mimetype comes first");
    let mut content = String::new();
    std::io::Read::read_to_string(&mut archive.by_name("content.xml").unwrap(), &mut content)
        .unwrap();
    assert!(content.contains("<text:p>José da Silva</text:p>"), "{content}");
    assert!(content.contains(r#"office:value-type="float" office:value="1.45""#), "{content}");
    let out = run(&["connected", "--tz", "UTC", "--format", "table", &log], None);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("user  host   feature  daemon  since"), "{}", out.stdout);
    assert!(
        lines[1].starts_with("ivy   PC-10  Origin   orglab  2026-11-24T06:30:00+00:00"),
        "{}",
        out.stdout
    );
}

#[test]
fn datestamp_lines_carry_their_own_date_and_offset() {
    let out = run(&["sessions", "--tz", "UTC", &fixture("datestamp.log")], None);
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(
        pick(&out.records, &["user", "start", "end", "seconds"]),
        vec![
            json!({"user": "alice", "start": "2026-11-23T08:30:00+00:00", "end": "2026-11-23T09:45:00+00:00",
                    "seconds": 4500})
        ]
    );
}

#[test]
fn weeks_and_months_join_the_days() {
    let log = fixture("day.log");
    for (per, period, start) in [
        ("week", "2026-W48", "2026-11-23T00:00:00+00:00"),
        ("month", "2026-11", "2026-11-01T00:00:00+00:00"),
    ] {
        let out = run(&["report", "--tz", "UTC", "--per", per, "--user", "erin", &log], None);
        assert_eq!(
            pick(
                &out.records,
                &["period", "period_start", "user", "connected_seconds", "sessions"]
            ),
            vec![
                json!({"period": period, "period_start": start, "user": "erin", "connected_seconds": 3600,
                        "sessions": 1})
            ],
            "{per}"
        );
    }
}

#[test]
fn a_followed_stream_saves_its_state_when_stopped() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let text = std::fs::read_to_string(fixture("day.log")).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let mut child = Command::new(env!("CARGO_BIN_EXE_origin-tokens"))
        .args(["events", "--tz", "UTC", "--state", state.to_str().unwrap()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    for line in &lines[..32] {
        writeln!(stdin, "{}", json!({"kind": "line", "line": line})).unwrap();
    }
    stdin.flush().unwrap();
    // The stream stays open, as behind log-tail --follow: wait for erin's checkout to come out.
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("\"erin\"") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "the stream ended early");
    }
    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(kill.success());
    let status = child.wait().unwrap();
    drop(stdin);
    assert!(status.success(), "a stop is a clean end: {status:?}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert!(saved.to_string().contains("\"erin\""), "erin's open session is kept: {saved}");

    let rest = lines[32..].join("\n") + "\n";
    let out = run(
        &["sessions", "--tz", "UTC", "--state", state.to_str().unwrap()],
        Some(rest.as_bytes()),
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(pick(&out.records, SESSION), day_sessions()[7..11].to_vec());
}
