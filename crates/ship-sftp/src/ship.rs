//! Upload mode: every input record's file goes to the target folder; then, if everything
//! arrived, retention runs.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crossbeam_channel::select;
use opsline::record::FieldPath;
use opsline::{Code, Context, Flush, Record, RecordReader, RecordWriter, WithCode};
use serde_json::{Map, Value, json};

use crate::pool::{Done, Outcome, Pool};
use crate::prune::{self, Age, Listed, Rules};
use crate::settings::Settings;
use crate::transfer::{Existing, Job, Shipped};
use crate::{TOOL, connect};

/// Retention settings of an upload run.
#[derive(Debug, Clone)]
pub struct Retention {
    /// What to delete.
    pub rules: Rules,
    /// Only list.
    pub dry_run: bool,
}

/// What the upload run was asked to do.
#[derive(Debug)]
pub struct UploadPlan {
    /// Connection and transfer settings.
    pub settings: Arc<Settings>,
    /// Replace different existing files.
    pub overwrite: bool,
    /// Retention, if asked for.
    pub retention: Option<Retention>,
}

/// Counts that decide the exit status and whether retention may run.
#[derive(Debug, Default)]
struct Tally {
    shipped: u64,
    failed: u64,
    temporary: bool,
    upstream_errors: u64,
}

/// Runs upload mode over the records of `reader`.
pub fn run(
    plan: &UploadPlan,
    reader: RecordReader,
    field: &FieldPath,
    ctx: &Context,
) -> anyhow::Result<Code> {
    let mut out = RecordWriter::stdout(ctx.tool, Flush::EachRecord)?;
    let pool = Pool::start(&plan.settings, &ctx.shutdown);
    let mut waiting: HashMap<u64, Record> = HashMap::new();
    let mut names: HashSet<String> = HashSet::new();
    let mut tally = Tally::default();
    let mut next_id = 0u64;
    for item in reader {
        let mut record = item.map_err(opsline::input::InputError::into_fatal)?;
        if record.passes_through(field) {
            tally.upstream_errors += u64::from(record.has_error());
            out.write(&record)?;
            continue;
        }
        let job = match job_for(&record, field, plan, &mut names) {
            Ok(job) => job,
            Err(message) => {
                record.set_error(TOOL, message);
                tally.failed += 1;
                out.write(&record)?;
                continue;
            }
        };
        next_id += 1;
        waiting.insert(next_id, record);
        if let Err(fatal) = submit(&pool, next_id, job, &mut waiting, &mut out, &mut tally, plan) {
            pool.abort();
            drain(pool, &mut waiting, &mut out, &mut tally, plan).ok();
            return Err(fatal);
        }
    }
    drain(pool, &mut waiting, &mut out, &mut tally, plan)?;
    let mut code = Code::Ok;
    if let Some(retention) = &plan.retention {
        code = code.worst(retain(plan, retention, &tally, &names, &mut out, ctx));
    }
    let written = out.finish()?;
    let code = code.worst(written);
    Ok(if tally.temporary { code.worst(Code::TempFail) } else { code })
}

/// Sends a job, writing finished records while the threads are busy. A fatal outcome is
/// returned as the error that stops the run.
fn submit(
    pool: &Pool,
    id: u64,
    job: Job,
    waiting: &mut HashMap<u64, Record>,
    out: &mut RecordWriter,
    tally: &mut Tally,
    plan: &UploadPlan,
) -> anyhow::Result<()> {
    let mut job = Some((id, job));
    while let Some(item) = job.take() {
        select! {
            send(pool.jobs(), item) -> sent => sent.map_err(|_| anyhow::anyhow!("transfer threads ended"))?,
            recv(pool.results()) -> done => {
                job = Some(item);
                if let Ok(done) = done {
                    report(done, waiting, out, tally, plan)?;
                }
            }
        }
    }
    while let Ok(done) = pool.results().try_recv() {
        report(done, waiting, out, tally, plan)?;
    }
    Ok(())
}

fn drain(
    pool: Pool,
    waiting: &mut HashMap<u64, Record>,
    out: &mut RecordWriter,
    tally: &mut Tally,
    plan: &UploadPlan,
) -> anyhow::Result<()> {
    let mut fatal = None;
    for done in pool.finish() {
        if let Err(e) = report(done, waiting, out, tally, plan) {
            fatal.get_or_insert(e);
        }
    }
    fatal.map_or(Ok(()), Err)
}

fn job_for(
    record: &Record,
    field: &FieldPath,
    plan: &UploadPlan,
    names: &mut HashSet<String>,
) -> Result<Job, String> {
    let local = record.input_path(field).expect("records without a path pass through")?;
    let name = local
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| format!("{} has no usable file name", local.display()))?
        .to_owned();
    if !names.insert(name.clone()) {
        return Err(format!("another input file of this run is also named {name:?}"));
    }
    Ok(Job {
        local,
        remote_dir: plan.settings.connect.target.dir.clone(),
        name,
        existing: Existing::SkipIdentical { overwrite: plan.overwrite },
    })
}

/// Writes the record of a finished job.
fn report(
    done: Done,
    waiting: &mut HashMap<u64, Record>,
    out: &mut RecordWriter,
    tally: &mut Tally,
    plan: &UploadPlan,
) -> anyhow::Result<()> {
    let mut record = waiting.remove(&done.id).unwrap_or_else(|| Record::new("shipped"));
    match done.outcome {
        Outcome::Shipped(shipped) => {
            tally.shipped += 1;
            log_shipped(&plan.settings, &shipped);
            record.set_kind("shipped");
            record.insert("sftp", sftp_field(&plan.settings, &shipped));
        }
        Outcome::Failed { temporary, message } => {
            tally.failed += 1;
            tally.temporary |= temporary;
            record.set_error(TOOL, message);
        }
        Outcome::Fatal(error) => {
            record.set_error(TOOL, format!("{error:#}"));
            out.write(&record)?;
            return Err(error);
        }
    }
    out.write(&record)?;
    Ok(())
}

/// One line on stderr per file at -v, so the run's log (the nightly recap attaches it) says
/// what went where.
fn log_shipped(settings: &Settings, shipped: &Shipped) {
    let host = settings.connect.target.display_host();
    if shipped.skipped {
        tracing::info!(bytes = shipped.bytes, "already on {host}, skipped: {}", shipped.remote);
    } else {
        tracing::info!(
            bytes = shipped.bytes,
            seconds = format!("{:.2}", shipped.seconds),
            "shipped to {host}: {}",
            shipped.remote
        );
    }
}

/// The record's `sftp` object.
pub fn sftp_field(settings: &Settings, shipped: &Shipped) -> Value {
    let mut map = Map::new();
    map.insert("host".into(), settings.connect.target.display_host().into());
    map.insert("remote".into(), shipped.remote.clone().into());
    map.insert("bytes".into(), shipped.bytes.into());
    if let Some(hash) = &shipped.sha256 {
        map.insert("sha256".into(), hash.clone().into());
    }
    map.insert("seconds".into(), json!((shipped.seconds * 1000.0).round() / 1000.0));
    if shipped.skipped {
        map.insert("skipped".into(), true.into());
    }
    Value::Object(map)
}

/// Runs retention if this run's uploads all succeeded; returns the status it adds.
fn retain(
    plan: &UploadPlan,
    retention: &Retention,
    tally: &Tally,
    shipped_names: &HashSet<String>,
    out: &mut RecordWriter,
    ctx: &Context,
) -> Code {
    let why_not = if ctx.shutdown.requested() {
        Some("stopped")
    } else if tally.failed > 0 || tally.upstream_errors > 0 {
        Some("not every file of this run arrived")
    } else if tally.shipped == 0 {
        Some("no file was shipped in this run")
    } else {
        None
    };
    if let Some(why) = why_not {
        tracing::warn!("retention skipped: {why}");
        return Code::Ok;
    }
    match prune_remote(plan, retention, shipped_names, out) {
        Ok(()) => Code::Ok,
        Err(e) => {
            tracing::error!("retention failed: {e:#}");
            opsline::exit::code_of(&e)
        }
    }
}

fn prune_remote(
    plan: &UploadPlan,
    retention: &Retention,
    protect: &HashSet<String>,
    out: &mut RecordWriter,
) -> anyhow::Result<()> {
    let settings = &plan.settings;
    let conn = connect::connect(&settings.connect).map_err(|e| e.error)?;
    let dir = &settings.connect.target.dir;
    let listing_dir = if dir.is_empty() { "." } else { dir.as_str() };
    let entries = conn
        .sftp
        .readdir(Path::new(listing_dir))
        .with_code(Code::TempFail, || format!("cannot list {listing_dir} for retention"))?;
    let files: Vec<Listed> = entries
        .into_iter()
        .filter(|(_, stat)| stat.is_file())
        .filter_map(|(path, stat)| {
            let name = path.file_name()?.to_str()?.to_owned();
            Some(Listed { name, size: stat.size.unwrap_or(0), mtime: stat.mtime })
        })
        .collect();
    let doomed = prune::select(&files, &retention.rules, chrono::Local::now(), protect);
    for (file, age) in doomed {
        let remote = crate::transfer::remote_join(dir, &file.name);
        let mut record = pruned_record(settings, &remote, &file, &age, retention.dry_run);
        if retention.dry_run {
            tracing::info!("would prune {remote}");
        } else if let Err(e) = conn.sftp.unlink(Path::new(&remote)) {
            record.set_error(TOOL, format!("cannot delete {remote}: {e}"));
        } else {
            tracing::info!("pruned {remote}");
        }
        out.write(&record)?;
    }
    Ok(())
}

fn pruned_record(
    settings: &Settings,
    remote: &str,
    file: &Listed,
    age: &Age,
    dry_run: bool,
) -> Record {
    let mut record = Record::new("pruned");
    let mut sftp = Map::new();
    sftp.insert("host".into(), settings.connect.target.display_host().into());
    sftp.insert("remote".into(), remote.into());
    sftp.insert("bytes".into(), file.size.into());
    match age {
        Age::Named(date) => sftp.insert("date".into(), date.to_string().into()),
        Age::Modified(time) => sftp.insert("mtime".into(), opsline::time::rfc3339(time).into()),
    };
    if dry_run {
        sftp.insert("dry_run".into(), true.into());
    }
    record.insert("sftp", Value::Object(sftp));
    record
}
