//! The subcommands: reading the inputs through the engine into each subcommand's sink.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use opsline::{Code, Context, Flush, Record, StateFile, WithCode};
use serde_json::{Value, json};

use crate::cli::{Cli, Command, LogArgs, SnapshotArgs};
use crate::engine::{
    ClosedSession, Engine, Flow, KeyInfo, Options, Saved, ServerEvent, Sink, UsageEvent,
};
use crate::input::{feed_blocks, feed_stdin, open, order_by_first_date, unwrap_record};
use crate::net::{Enricher, IpMatch, PcTable, parse_snapshots};
use crate::output::{Field, Format, Output, Spreadsheets};
use crate::prepare::Preparer;
use crate::report::{By, Per, Periods, Report};
use crate::zone::{DayClock, Zone};

const STATE_VERSION: u32 = 1;
const SAVE_EVERY: Duration = Duration::from_secs(5);
/// Beyond a few, more threads parsing would only wait for the engine.
const MAX_PREPARERS: usize = 4;

const EVENT_COLUMNS: &[&str] =
    &["time", "event", "daemon", "feature", "user", "host", "licenses", "reason", "ip", "pc.name"];
const SESSION_COLUMNS: &[&str] = &[
    "start",
    "end",
    "seconds",
    "daemon",
    "feature",
    "user",
    "host",
    "licenses",
    "checkouts",
    "closed_by",
    "ip",
    "pc.name",
];
const CONNECTED_COLUMNS: &[&str] = &[
    "user",
    "host",
    "feature",
    "daemon",
    "since",
    "seconds",
    "licenses",
    "checkouts",
    "ip",
    "pc.name",
];
const REPORT_USER: &[&str] = &[
    "period",
    "user",
    "connected_hours",
    "token_hours",
    "sessions",
    "peak_licenses",
    "peak_at",
    "denials",
    "transient_denials",
];
const REPORT_HOST: &[&str] = &[
    "period",
    "host",
    "connected_hours",
    "token_hours",
    "sessions",
    "peak_licenses",
    "peak_at",
    "denials",
    "transient_denials",
];
const REPORT_FEATURE: &[&str] = &[
    "period",
    "feature",
    "connected_hours",
    "token_hours",
    "sessions",
    "peak_licenses",
    "peak_at",
    "denials",
    "transient_denials",
];

/// Runs the subcommand.
pub fn run(cli: Cli, ctx: &Context) -> anyhow::Result<Code> {
    match cli.command {
        Command::Events(log) => print(ctx, &log, EVENT_COLUMNS, false, Events, |e| e.0),
        Command::Sessions(log) => print(ctx, &log, SESSION_COLUMNS, true, Sessions, |s| s.0),
        Command::Report(args) => {
            if args.log.state.is_some() {
                return Err(opsline::exit::err(
                    Code::Usage,
                    "report totals whole logs; --state is for events, sessions and connected",
                ));
            }
            let setup = Setup::new(&args.log, None, i64::from(args.transient))?;
            let columns = match args.by {
                By::User => REPORT_USER,
                By::Host => REPORT_HOST,
                By::Feature => REPORT_FEATURE,
            };
            let mut out = setup.output(&args.log, columns)?;
            let zone = setup.zone;
            let periods = Periods::new(args.per, zone);
            let mut report = Report::new(args.by, periods, setup.since, setup.until);
            let (code, _) = drive(ctx, &args.log, setup, &mut report, true)?;
            write_report(&mut out, &report, args.by, args.per, zone)?;
            Ok(Code::worst(code, out.finish()?))
        }
        Command::Connected(args) => {
            let at = args.at.as_deref().map(|t| parse_time(t, args.log.tz)).transpose()?;
            let setup = Setup::new(&args.log, at, 0)?;
            let mut out = setup.output(&args.log, CONNECTED_COLUMNS)?;
            let (zone, ips) = (setup.zone, setup.ips);
            let (code, engine) = drive(ctx, &args.log, setup, &mut NoSink, false)?;
            let reference = at.or(engine.last_epoch()).unwrap_or_default();
            for (key, session) in engine.open_sessions() {
                out.emit(&connected_record(key, session, reference, zone, ips))?;
            }
            Ok(Code::worst(code, out.finish()?))
        }
        Command::Snapshot(args) => snapshot(ctx, &args),
    }
}

/// Runs `events` or `sessions`: the sink `wrap` makes of a [`Printer`] prints as the engine
/// goes; `emit_open` reports the sessions still open at the end.
fn print<S: Sink>(
    ctx: &Context,
    log: &LogArgs,
    columns: &'static [&'static str],
    emit_open: bool,
    wrap: fn(Printer) -> S,
    unwrap: fn(S) -> Printer,
) -> anyhow::Result<Code> {
    let setup = Setup::new(log, None, 0)?;
    let printer = Printer {
        out: setup.output(log, columns)?,
        zone: setup.zone,
        since: setup.since,
        until: setup.until,
        ips: setup.ips,
    };
    let mut sink = wrap(printer);
    let (code, _) = drive(ctx, log, setup, &mut sink, emit_open)?;
    Ok(Code::worst(code, unwrap(sink).out.finish()?))
}

/// What every log-reading subcommand prepares.
#[derive(Debug)]
struct Setup {
    zone: Zone,
    since: Option<i64>,
    until: Option<i64>,
    ips: bool,
    engine: Engine,
}

impl Setup {
    fn new(log: &LogArgs, at: Option<i64>, transient_secs: i64) -> anyhow::Result<Setup> {
        let zone = log.tz;
        let since = log.since.as_deref().map(|t| parse_time(t, zone)).transpose()?;
        let until = log.until.as_deref().map(|t| parse_time(t, zone)).transpose()?;
        let enricher = enricher(log, zone)?;
        let options = Options {
            start_date: log.start_date,
            fold_case: log.fold_case,
            users: log.user.clone(),
            features: log.feature.clone(),
            stop_after: at.or(until),
            transient_secs,
        };
        let ips = enricher.is_some();
        let engine = Engine::new(DayClock::new(zone), options, enricher);
        Ok(Setup { zone, since, until, ips, engine })
    }

    fn output(&self, log: &LogArgs, columns: &'static [&'static str]) -> anyhow::Result<Output> {
        let flush = if reads_stdin(log) { Flush::EachRecord } else { Flush::Buffered };
        let sheets = Spreadsheets { xlsx: log.xlsx.clone(), ods: log.ods.clone() };
        Output::new(Format::choose(log.format), columns, flush, sheets, crate::TOOL)
    }
}

fn reads_stdin(log: &LogArgs) -> bool {
    log.logs.is_empty() || log.logs.iter().any(|p| p == Path::new("-"))
}

fn enricher(log: &LogArgs, zone: Zone) -> anyhow::Result<Option<Enricher>> {
    let mut pcs = PcTable::default();
    for path in &log.dhcpd {
        let text = std::fs::read(path)
            .with_code(Code::NoInput, || format!("cannot read {}", path.display()))?;
        pcs.add_dhcpd(&String::from_utf8_lossy(&text));
    }
    let Some(path) = &log.snapshots else {
        if !log.dhcpd.is_empty() {
            tracing::warn!(
                "--dhcpd names PCs by address: it needs --snapshots to know the addresses"
            );
        }
        return Ok(None);
    };
    let text = std::fs::read(path)
        .with_code(Code::NoInput, || format!("cannot read {}", path.display()))?;
    let snapshots = parse_snapshots(&String::from_utf8_lossy(&text), zone);
    tracing::info!("{} snapshots, {} addresses with a PC name", snapshots.len(), pcs.len());
    Ok(Some(Enricher::new(snapshots, pcs, log.port)))
}

/// An RFC 3339 time, or a date with an optional time of day in `zone`.
pub fn parse_time(text: &str, zone: Zone) -> anyhow::Result<i64> {
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp());
    }
    for format in ["%Y-%m-%d %H:%M:%S", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M"] {
        if let Ok(naive) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(zone.to_epoch(naive));
        }
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(zone.midnight(date));
    }
    Err(opsline::exit::err(
        Code::Usage,
        format!("{text:?} is not a time (use RFC 3339 or YYYY-MM-DD[ HH:MM[:SS]])"),
    ))
}

/// Reads every input through the engine into `sink`, keeps `--state`, prints the summary.
fn drive<S: Sink>(
    ctx: &Context,
    log: &LogArgs,
    setup: Setup,
    sink: &mut S,
    emit_open: bool,
) -> anyhow::Result<(Code, Engine)> {
    let mut engine = setup.engine;
    let state = match &log.state {
        Some(path) => Some(load_state(path, log.reset, &mut engine)?),
        None => None,
    };
    if state.is_some() {
        ctx.shutdown.watch();
    }
    let mut driver =
        Driver { engine: &mut engine, sink, state: state.as_ref(), saved_at: Instant::now() };
    read_inputs(ctx, log, &mut driver)?;
    driver.engine.finish(emit_open && state.is_none(), driver.sink)?;
    if let Some(state) = &state {
        state.save(&engine.save())?;
    }
    let code = summarise(&engine, log.strict);
    Ok((code, engine))
}

fn load_state(path: &Path, reset: bool, engine: &mut Engine) -> anyhow::Result<StateFile> {
    let state = StateFile::lock(path, crate::TOOL, STATE_VERSION)?;
    if reset {
        state.reset()?;
    } else if let Some(saved) = state.load::<Saved>()? {
        engine.restore(saved);
    }
    Ok(state)
}

struct Driver<'a, S> {
    engine: &'a mut Engine,
    sink: &'a mut S,
    state: Option<&'a StateFile>,
    saved_at: Instant,
}

impl<S: Sink> Driver<'_, S> {
    fn line(&mut self, raw: &[u8]) -> anyhow::Result<Flow> {
        match unwrap_record(raw) {
            Some(line) => self.engine.line(&line, self.sink),
            None => {
                self.engine.record_without_line();
                Ok(Flow::Continue)
            }
        }
    }

    /// Saves the state now and then while following a stream.
    fn idle(&mut self) -> anyhow::Result<()> {
        if let Some(state) = self.state.filter(|_| self.saved_at.elapsed() >= SAVE_EVERY) {
            state.save(&self.engine.save())?;
            self.saved_at = Instant::now();
        }
        Ok(())
    }
}

fn read_inputs<S: Sink>(
    ctx: &Context,
    log: &LogArgs,
    driver: &mut Driver<'_, S>,
) -> anyhow::Result<()> {
    let files: Vec<PathBuf> = log.logs.iter().filter(|p| *p != Path::new("-")).cloned().collect();
    let mut preparers = preparers(driver.engine);
    for path in order_by_first_date(&files)? {
        driver.engine.set_source(&path.display().to_string());
        let flow = feed_blocks(open(&path)?, &mut preparers, |block| {
            if ctx.shutdown.requested() {
                return Ok(Flow::Stop);
            }
            driver.engine.block(block, driver.sink)
        })
        .with_code(Code::IoErr, || format!("cannot read {}", path.display()))?;
        if flow == Flow::Stop {
            return Ok(());
        }
    }
    if reads_stdin(log) {
        driver.engine.set_source("standard input");
        let cell = std::cell::RefCell::new(driver);
        feed_stdin(&ctx.shutdown, |raw| cell.borrow_mut().line(raw), || cell.borrow_mut().idle())?;
    }
    Ok(())
}

/// One preparer per core, so that parsing keeps up with the engine.
fn preparers(engine: &Engine) -> Vec<Preparer> {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    (0..cores.clamp(1, MAX_PREPARERS)).map(|_| engine.preparer()).collect()
}

fn summarise(engine: &Engine, strict: bool) -> Code {
    let stats = &engine.stats;
    if stats.malformed > 0 {
        tracing::warn!(
            "{} of {} lines were not debug-log lines; first: {}",
            stats.malformed,
            stats.lines,
            stats.first_malformed.join("; ")
        );
    }
    if stats.undated > 0 {
        tracing::warn!(
            "{} lines came before the first date in the log and were left out; give --start-date to date them",
            stats.undated
        );
    }
    if stats.unmatched_in > 0 {
        tracing::info!(
            "{} IN lines had no open checkout (the log starts mid-session?)",
            stats.unmatched_in
        );
    }
    if stats.unknown_kinds > 0 {
        tracing::info!("{} usage lines of kinds this tool does not know", stats.unknown_kinds);
    }
    tracing::info!("{} lines, {} blank", stats.lines, stats.blank);
    if strict && stats.malformed > 0 { Code::DataErr } else { Code::Ok }
}

#[derive(Debug)]
struct NoSink;
impl Sink for NoSink {}

fn in_window(t: i64, since: Option<i64>, until: Option<i64>) -> bool {
    since.is_none_or(|s| t >= s) && until.is_none_or(|u| t < u)
}

fn key_fields(record: &mut Record, key: &KeyInfo) {
    record.insert("daemon", key.daemon.as_str());
    record.insert("feature", key.feature.as_str());
    record.insert("user", key.user.as_str());
    record.insert("host", key.host.as_str());
}

fn ip_fields(record: &mut Record, ip: Option<&IpMatch>) {
    record.insert("ip", ip.and_then(|m| m.ip).map_or(Value::Null, |ip| json!(ip.to_string())));
    record.insert("ip_confidence", ip.map_or(Value::Null, |m| json!(m.confidence)));
    let candidates: Vec<String> =
        ip.map(|m| m.candidates.iter().map(ToString::to_string).collect()).unwrap_or_default();
    record.insert("ip_candidates", candidates);
    let pc = ip.and_then(|m| m.pc.as_ref());
    record.insert("pc", pc.map_or(Value::Null, |pc| json!({"name": pc.name, "mac": pc.mac})));
}

/// Where `events` and `sessions` print their records, and which of them.
struct Printer {
    out: Output,
    zone: Zone,
    since: Option<i64>,
    until: Option<i64>,
    ips: bool,
}

/// `events`: a record for each usage and server line.
struct Events(Printer);

/// `sessions`: a record for each session.
struct Sessions(Printer);

impl Sink for Events {
    fn usage(&mut self, time: i64, event: &UsageEvent<'_>) -> anyhow::Result<()> {
        let p = &mut self.0;
        if !in_window(time, p.since, p.until) {
            return Ok(());
        }
        let mut record = Record::new("token");
        record.insert("event", event.kind.name());
        record.insert("time", p.zone.format(time));
        key_fields(&mut record, event.key);
        record.insert("licenses", event.licenses);
        let reason = event.reason.map(|r| String::from_utf8_lossy(r).into_owned());
        record.insert("reason", reason.map_or(Value::Null, Value::String));
        if p.ips && event.kind == crate::parse::Kind::Out {
            ip_fields(&mut record, event.ip);
        }
        p.out.emit(&record)
    }

    fn server(&mut self, time: i64, event: &ServerEvent<'_>) -> anyhow::Result<()> {
        let p = &mut self.0;
        if !in_window(time, p.since, p.until) {
            return Ok(());
        }
        let mut record = Record::new("server");
        record.insert("event", event.event);
        record.insert("time", p.zone.format(time));
        record.insert("daemon", event.daemon);
        record.insert("closed_sessions", event.closed);
        if let Some(port) = event.port {
            record.insert("port", port);
        }
        p.out.emit(&record)
    }
}

impl Sink for Sessions {
    fn session(&mut self, closed: &ClosedSession<'_>) -> anyhow::Result<()> {
        let p = &mut self.0;
        let start = closed.session.start;
        let overlaps =
            p.since.is_none_or(|s| closed.until >= s) && p.until.is_none_or(|u| start < u);
        if !overlaps {
            return Ok(());
        }
        let mut record = Record::new("session");
        key_fields(&mut record, closed.key);
        record.insert("start", p.zone.format(start));
        record.insert("end", closed.end.map_or(Value::Null, |e| json!(p.zone.format(e))));
        record.insert("seconds", (closed.until - start).max(0));
        record.insert("licenses", closed.session.max_licenses);
        record.insert("checkouts", closed.session.outs);
        record.insert("closed_by", closed.closed_by);
        if p.ips {
            ip_fields(&mut record, closed.session.ip.as_deref());
        }
        p.out.emit(&record)
    }
}

fn connected_record(
    key: &KeyInfo,
    session: &crate::engine::OpenSession,
    reference: i64,
    zone: Zone,
    ips: bool,
) -> Record {
    let mut record = Record::new("connected");
    key_fields(&mut record, key);
    record.insert("since", zone.format(session.start));
    record.insert("seconds", (reference - session.start).max(0));
    record.insert("licenses", session.held());
    record.insert("checkouts", session.checkouts.len());
    if ips {
        ip_fields(&mut record, session.ip.as_deref());
    }
    record
}

fn hours(seconds: i64) -> f64 {
    // Two decimals: a spreadsheet column of hours, not a measurement.
    (seconds as f64 / 36.0).round() / 100.0
}

fn write_report(
    out: &mut Output,
    report: &Report,
    by: By,
    per: Option<Per>,
    zone: Zone,
) -> anyhow::Result<()> {
    let mut stamp = Stamp::default();
    // Rows come by period: its label and start are formatted once a period.
    let mut period: Option<(i64, String, String)> = None;
    for (start, group, row) in report.rows() {
        if per.is_some() && period.as_ref().is_none_or(|p| p.0 != start) {
            period = Some((start, report.label(start).unwrap_or_default(), zone.format(start)));
        }
        let peak_at = row.peak_at.map(|t| zone.format(t));
        let mut fields = Vec::with_capacity(16);
        fields.extend([("kind", Field::Text("report")), ("ts", Field::Text(stamp.now()))]);
        fields.push(("by", Field::Text(by.field())));
        if let Some((_, label, start)) = &period {
            fields.extend([("period", Field::Text(label)), ("period_start", Field::Text(start))]);
        }
        fields.extend([
            (by.field(), Field::Text(group)),
            ("connected_seconds", Field::Int(row.connected)),
            ("connected_hours", Field::Real(hours(row.connected))),
            ("token_seconds", Field::Int(row.license_seconds)),
            ("token_hours", Field::Real(hours(row.license_seconds))),
            ("sessions", Field::Int(row.sessions.into())),
            ("peak_licenses", Field::Int(row.peak.into())),
            ("peak_at", Field::Maybe(peak_at.as_deref())),
            ("denials", Field::Int(row.denials.into())),
            ("transient_denials", Field::Int(row.transient_denials.into())),
        ]);
        out.emit_fields(&fields)?;
    }
    Ok(())
}

/// The `ts` of records written in a row: the current time as [`opsline::time::now_rfc3339`]
/// gives it, formatted again only when the millisecond it shows has passed.
#[derive(Default)]
struct Stamp {
    millis: u128,
    text: String,
}

impl Stamp {
    fn now(&mut self) -> &str {
        let now = SystemTime::now();
        let millis = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
        if self.text.is_empty() || millis != self.millis {
            self.millis = millis;
            self.text = opsline::time::system_time_rfc3339(now);
        }
        &self.text
    }
}

fn snapshot(ctx: &Context, args: &SnapshotArgs) -> anyhow::Result<Code> {
    if args.follow {
        return follow_snapshots(ctx, args);
    }
    let taken = crate::snapshot::take(args, &opsline::time::now_rfc3339())?;
    let mut out = opsline::RecordWriter::stdout(ctx.tool, Flush::Buffered)?;
    out.write(&snapshot_record(&taken, args))?;
    Ok(out.finish()?)
}

fn snapshot_record(taken: &crate::snapshot::Taken, args: &SnapshotArgs) -> Record {
    let mut record = Record::new("snapshot");
    record.insert("port", taken.port);
    record.insert("peers", taken.peers.iter().map(ToString::to_string).collect::<Vec<_>>());
    record.insert("output", args.output.display().to_string());
    record
}

/// `snapshot --follow`: a snapshot after every checkout line on standard input.
fn follow_snapshots(ctx: &Context, args: &SnapshotArgs) -> anyhow::Result<Code> {
    use crate::snapshot::{Cue, cue, take_at};
    ctx.shutdown.watch();
    let mut port = crate::snapshot::configured_port(args)?;
    let mut out = opsline::RecordWriter::stdout(ctx.tool, Flush::EachRecord)?;
    let mut warned = false;
    let on_line = |raw: &[u8]| -> anyhow::Result<Flow> {
        let Some(line) = unwrap_record(raw) else { return Ok(Flow::Continue) };
        match (cue(&line), port) {
            (Cue::Port(announced), None) => port = Some(announced),
            (Cue::Checkout, Some(p)) => {
                let trigger = String::from_utf8_lossy(&line);
                let taken = take_at(args, p, Some(&trigger), &opsline::time::now_rfc3339())?;
                out.write(&snapshot_record(&taken, args))?;
            }
            (Cue::Checkout, None) if !warned => {
                warned = true;
                tracing::warn!(
                    "no port known yet (give --port or --log); checkouts before the announcement get no snapshot"
                );
            }
            _ => {}
        }
        Ok(Flow::Continue)
    };
    feed_stdin(&ctx.shutdown, on_line, || Ok(()))?;
    Ok(out.finish()?)
}
