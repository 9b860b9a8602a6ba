//! `notify`: tell people what happened, per record or as a digest, by e-mail, Mattermost,
//! Pushover or webhook, passing every record on with `"notified"` added.

pub mod channel;
pub mod digest;
pub mod http;
pub mod interval;
pub mod limit;
pub mod notifier;
pub mod options;
pub mod redact;
pub mod retry;
pub mod setup;
pub mod template;

use crossbeam_channel::{Receiver, select};
use opsline::{Code, Context, Flush, RecordReader, RecordWriter};
use serde_json::{Map, Value};

pub use options::Cli;

use crate::digest::Digest;
use crate::notifier::{Notifier, Outcome};

/// The tool's name.
pub const TOOL: &str = "notify";

/// Examples for the man page.
pub const EXAMPLES: &[opsline::man::Example] = &[
    opsline::man::Example {
        title: "Mail each uploader that their converted video is ready, with the thumbnail attached.",
        command: "watch-uploads --users users.json /srv/sftp | convert-video --to flv | notify --smtp smtp://mail.example.org:587 --smtp-user notify --smtp-password-file /etc/opsline/smtp.pw --from 'Videos <videos@example.org>' --to-field user.email --attach-field video.thumbnail",
    },
    opsline::man::Example {
        title: "Nightly recap of the backup by e-mail with the log attached, and to Mattermost.",
        command: "/usr/local/sbin/nightly-backup 2>backup.log | notify --digest --smtp smtps://mail.example.org --from backup@example.org --to admin@example.org --attach backup.log --mattermost --mattermost-url-file /etc/opsline/mm.url --channel ops",
    },
    opsline::man::Example {
        title: "Push each new SSH login to the admin's phone (from cron), at most 10 a minute.",
        command: "log-tail --parse sshd /var/log/auth.log | notify --when 'sshd.event == \"accepted\"' --pushover --pushover-token-file /etc/opsline/po.token --pushover-user-file /etc/opsline/po.user --max-per-minute 10 --priority 1",
    },
    opsline::man::Example {
        title: "See what would be sent, without sending.",
        command: "notify --dry-run --webhook https://hooks.example.org/in --webhook-format slack < records.jsonl",
    },
];

/// Runs the tool.
pub fn run(cli: Cli, ctx: &opsline::Context) -> anyhow::Result<Code> {
    silence_library_logs();
    let (http, parts) = setup::prepare(&cli, ctx)?;
    let mut notifier = parts.build(&cli, &http);
    let flush = if cli.digest && cli.every.is_none() { Flush::Buffered } else { Flush::EachRecord };
    let mut out = RecordWriter::stdout(ctx.tool, flush)?;
    if cli.digest {
        run_digest(&cli, ctx, &mut notifier, &mut out)?;
    } else {
        for item in RecordReader::start(ctx.tool, &cli.input, &ctx.shutdown) {
            let mut record = item.map_err(opsline::input::InputError::into_fatal)?;
            notifier.notify_record(&mut record);
            out.write(&record)?;
        }
    }
    if notifier.suppressed() > 0 {
        tracing::warn!("{} message(s) not sent because of --max-per-minute", notifier.suppressed());
    }
    let code = out.finish()?;
    Ok(if notifier.undelivered() > 0 { code.worst(Code::TempFail) } else { code })
}

/// The HTTP and TLS libraries log through the `log` crate at debug and trace level, and those
/// lines carry request URLs, headers and bodies: the Mattermost webhook URL, Pushover's token,
/// webhook tokens. Secrets must not reach the log at any verbosity, so their lines are dropped;
/// notify's own lines (through `tracing`) say what was sent and what went wrong.
fn silence_library_logs() {
    log::set_max_level(log::LevelFilter::Off);
}

/// Collects records into digests, sending one every `--every` and one at the end of input.
fn run_digest(
    cli: &Cli,
    ctx: &Context,
    notifier: &mut Notifier<'_>,
    out: &mut RecordWriter,
) -> anyhow::Result<()> {
    let reader = RecordReader::start(ctx.tool, &cli.input, &ctx.shutdown);
    let mut digest = Digest::new(cli.digest_limit);
    let queued = queued_note();
    let mut collect = |item: opsline::input::Item,
                       digest: &mut Digest,
                       notifier: &Notifier<'_>|
     -> anyhow::Result<()> {
        let mut record = item.map_err(opsline::input::InputError::into_fatal)?;
        match notifier.wants(&record) {
            Ok(true) => {
                digest.add(&record);
                notifier::add_notified(&mut record, queued.clone());
            }
            Ok(false) => {}
            Err(e) => record.set_error(ctx.tool, e),
        }
        out.write(&record)?;
        Ok(())
    };
    match cli.every {
        None => {
            for item in reader {
                collect(item, &mut digest, notifier)?;
            }
        }
        Some(every) => {
            let records = forward(reader);
            let ticks = crossbeam_channel::tick(every.0);
            loop {
                select! {
                    recv(records) -> item => match item {
                        Ok(item) => collect(item, &mut digest, notifier)?,
                        Err(_) => break,
                    },
                    recv(ticks) -> _ => send_digest(notifier, &mut digest, false),
                }
            }
        }
    }
    // A run from cron always reports, even with nothing to count: a recap that does not come
    // looks like a job that did not run. A stream reports only periods that had records.
    send_digest(notifier, &mut digest, cli.every.is_none());
    Ok(())
}

fn queued_note() -> Map<String, Value> {
    let mut note = Map::new();
    note.insert("digest".into(), "queued".into());
    note
}

fn send_digest(notifier: &mut Notifier<'_>, digest: &mut Digest, even_empty: bool) {
    if digest.is_empty() && !even_empty {
        tracing::info!("no records since the last digest; nothing sent");
        return;
    }
    let summary = digest.take();
    match notifier.notify_digest(&summary) {
        Outcome::Sent => tracing::info!("digest of {} records sent", summary.count),
        Outcome::Suppressed => tracing::warn!("digest not sent: over --max-per-minute"),
        Outcome::Undelivered(why) => {
            tracing::error!("digest of {} records not delivered: {why}", summary.count)
        }
    }
}

/// Moves the reader onto a channel so that the digest loop can wait on records and on its
/// timer at once.
fn forward(reader: RecordReader) -> Receiver<opsline::input::Item> {
    let (sender, receiver) = crossbeam_channel::bounded(1024);
    std::thread::Builder::new()
        .name("digest-input".into())
        .spawn(move || {
            for item in reader {
                if sender.send(item).is_err() {
                    return;
                }
            }
        })
        .expect("the input thread starts");
    receiver
}
