//! The command line.

use std::path::PathBuf;

use clap::Parser;
use opsline::{CommonArgs, FieldPath, InputArgs};

use crate::channel::webhook::Format;
use crate::interval::Interval;

/// Tell people what happened: e-mail, Mattermost, Pushover and webhooks, per record or as a digest.
#[derive(Debug, Parser)]
#[command(
    name = "notify",
    version,
    about = "Tell people what happened: e-mail, Mattermost, Pushover and webhooks, per record or as a digest",
    long_about = "Reads records (JSON lines) from standard input or files and sends a message for each one \
        through every channel given (--smtp, --mattermost, --pushover, --webhook), or with --digest one \
        message that sums them all up at the end of the input (or every --every in a stream). Every record \
        is passed on to standard output with \"notified\": {CHANNEL: {\"status\": \"sent\"|\"failed\"|\"dry-run\", …}} \
        added ({\"suppressed\": …} when --max-per-minute held the message back, {\"digest\": \"queued\"} with \
        --digest), so notify can sit in the middle of a pipeline; records that carry an \"error\" are reported like the others (the built-in \
        texts put them first).\n\n\
        Texts are minijinja templates over the record's fields (--subject, --title, --body, --body-file), \
        with the filters size (bytes → \"1.5 MiB\"), duration (seconds → \"3m 07s\"), basename and summary; \
        without them notify uses built-in texts for the kinds the opsline tools write (video ready, archive \
        created or stale, file shipped, SSH login, upload). A template that does not compile stops notify \
        (exit 78) naming the template and line; one that fails on a record marks that record.\n\n\
        Failed deliveries are retried: network errors, timeouts and 5xx answers with exponential backoff, 429 \
        after its Retry-After (Pushover's 429 means the monthly quota is spent: reported, not retried). Other \
        4xx answers are not retried and their API error text is shown. A message that still cannot be \
        delivered marks its record with an \"error\", the stream goes on, and notify exits 75.\n\n\
        Secrets (the SMTP password, the Mattermost webhook URL, the Pushover token and user key, secret \
        webhook headers) are read only from files or the environment, and never written to logs or records."
)]
pub struct Cli {
    #[command(flatten)]
    pub input: InputArgs,

    /// Send e-mail through this SMTP server: smtp://HOST[:PORT] (STARTTLS required; port 587 by
    /// default) or smtps://HOST[:PORT] (implicit TLS; 465). Plain SMTP is accepted only from a
    /// server on this machine (localhost, 127.0.0.1, ::1) or with --smtp-insecure
    #[arg(long, value_name = "URL", help_heading = "E-mail")]
    pub smtp: Option<String>,

    /// Allow plain SMTP (no STARTTLS) to a server on another machine
    #[arg(long, help_heading = "E-mail")]
    pub smtp_insecure: bool,

    /// Log in to the SMTP server as USER (the password comes from --smtp-password-file or
    /// NOTIFY_SMTP_PASSWORD)
    #[arg(long, value_name = "USER", help_heading = "E-mail")]
    pub smtp_user: Option<String>,

    /// File whose first line is the SMTP password (else the environment variable
    /// NOTIFY_SMTP_PASSWORD)
    #[arg(long, value_name = "FILE", help_heading = "E-mail")]
    pub smtp_password_file: Option<PathBuf>,

    /// Also trust the CA certificates in this PEM file for the SMTP server (a private CA)
    #[arg(long, value_name = "FILE", help_heading = "E-mail")]
    pub smtp_ca_cert: Option<PathBuf>,

    /// The sender address: "Backups <backup@example.org>" or backup@example.org
    #[arg(long, value_name = "ADDRESS", help_heading = "E-mail")]
    pub from: Option<String>,

    /// Recipients, comma-separated (may be repeated)
    #[arg(long, value_name = "ADDRESS,…", value_delimiter = ',', help_heading = "E-mail")]
    pub to: Vec<String>,

    /// Also send each record's e-mail to the address(es) in this field (dotted, e.g.
    /// user.email): a string, a comma-separated string or a list. A record without the field
    /// is marked with an error
    #[arg(long, value_name = "FIELD", help_heading = "E-mail")]
    pub to_field: Option<FieldPath>,

    /// Attach this file to every e-mail (may be repeated; a digest attaches the run's log this way)
    #[arg(long, value_name = "FILE", help_heading = "E-mail")]
    pub attach: Vec<PathBuf>,

    /// Attach the file named by this field of each record (e.g. video.thumbnail; may be
    /// repeated). A record without the field, or whose file is gone, is sent without it
    #[arg(long, value_name = "FIELD", help_heading = "E-mail")]
    pub attach_field: Vec<FieldPath>,

    /// Leave out attachments larger than this many bytes (mail servers refuse big messages)
    #[arg(long, value_name = "BYTES", default_value_t = 20 * 1024 * 1024, help_heading = "E-mail")]
    pub max_attachment_size: u64,

    /// Post to a Mattermost incoming webhook; its URL (a secret) comes from
    /// --mattermost-url-file or NOTIFY_MATTERMOST_URL
    #[arg(long, help_heading = "Mattermost and Slack")]
    pub mattermost: bool,

    /// File whose first line is the Mattermost webhook URL
    #[arg(long, value_name = "FILE", help_heading = "Mattermost and Slack")]
    pub mattermost_url_file: Option<PathBuf>,

    /// Post to this channel instead of the webhook's own (Mattermost, --webhook-format slack)
    #[arg(long, value_name = "NAME", help_heading = "Mattermost and Slack")]
    pub channel: Option<String>,

    /// Post under this name (Mattermost, --webhook-format slack)
    #[arg(long, value_name = "NAME", help_heading = "Mattermost and Slack")]
    pub username: Option<String>,

    /// Post with this avatar picture (Mattermost, --webhook-format slack)
    #[arg(long, value_name = "URL", help_heading = "Mattermost and Slack")]
    pub icon_url: Option<String>,

    /// Push through Pushover; the application token and user key come from
    /// --pushover-token-file/NOTIFY_PUSHOVER_TOKEN and --pushover-user-file/NOTIFY_PUSHOVER_USER
    #[arg(long, help_heading = "Pushover")]
    pub pushover: bool,

    /// File whose first line is the Pushover application token
    #[arg(long, value_name = "FILE", help_heading = "Pushover")]
    pub pushover_token_file: Option<PathBuf>,

    /// File whose first line is the Pushover user (or group) key
    #[arg(long, value_name = "FILE", help_heading = "Pushover")]
    pub pushover_user_file: Option<PathBuf>,

    /// Pushover priority: -2 (silent) to 2 (emergency, repeated every minute for an hour until
    /// acknowledged)
    #[arg(long, value_name = "N", allow_hyphen_values = true,
          value_parser = clap::value_parser!(i8).range(-2..=2), help_heading = "Pushover")]
    pub priority: Option<i8>,

    /// Pushover sound name (e.g. siren, none)
    #[arg(long, value_name = "NAME", help_heading = "Pushover")]
    pub sound: Option<String>,

    /// Pushover supplementary URL: a template over the record, e.g. "https://files.example.org/{{ path | basename }}"
    #[arg(long, value_name = "TEMPLATE", help_heading = "Pushover")]
    pub url: Option<String>,

    /// Pushover API base URL (for tests and self-hosted gateways)
    #[arg(
        long,
        value_name = "URL",
        default_value = "https://api.pushover.net",
        help_heading = "Pushover"
    )]
    pub pushover_api: String,

    /// POST JSON to this URL (see --webhook-format)
    #[arg(long, value_name = "URL", help_heading = "Webhook")]
    pub webhook: Option<String>,

    /// Like --webhook, with the URL read from the first line of FILE (for URLs that carry a
    /// token, such as Slack's)
    #[arg(long, value_name = "FILE", conflicts_with = "webhook", help_heading = "Webhook")]
    pub webhook_url_file: Option<PathBuf>,

    /// What the webhook receives
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = Format::Record, help_heading = "Webhook")]
    pub webhook_format: Format,

    /// A template file that renders the webhook's JSON payload (implies --webhook-format template)
    #[arg(long, value_name = "FILE", help_heading = "Webhook")]
    pub webhook_template: Option<PathBuf>,

    /// An extra header "Name: value" for the webhook (may be repeated; visible in the process
    /// list, so not for tokens: use --header-file)
    #[arg(long, value_name = "HEADER", help_heading = "Webhook")]
    pub header: Vec<String>,

    /// A file of "Name: value" lines sent as webhook headers and treated as secrets (tokens)
    #[arg(long, value_name = "FILE", help_heading = "Webhook")]
    pub header_file: Option<PathBuf>,

    /// Only records for which this expression over their fields is true get a message (or go
    /// into the digest), e.g. 'sshd.event == "accepted"' or 'error or kind == "archive"'; the
    /// others pass through untouched
    #[arg(long, value_name = "EXPRESSION", help_heading = "Messages")]
    pub when: Option<String>,

    /// E-mail subject template (the default depends on the record's kind)
    #[arg(long, value_name = "TEMPLATE", help_heading = "Messages")]
    pub subject: Option<String>,

    /// Title template for Pushover and chat messages (default: the subject)
    #[arg(long, value_name = "TEMPLATE", help_heading = "Messages")]
    pub title: Option<String>,

    /// Message text template
    #[arg(long, value_name = "TEMPLATE", conflicts_with = "body_file", help_heading = "Messages")]
    pub body: Option<String>,

    /// Message text template read from FILE
    #[arg(long, value_name = "FILE", help_heading = "Messages")]
    pub body_file: Option<PathBuf>,

    /// Send one message summing up all records at the end of the input (or every --every):
    /// counts per kind and status, errors and warnings first, then details; the subject says
    /// OK, N warnings or N errors. Templates then see: summary, count, kinds, statuses,
    /// error_count, warning_count, errors, warnings, records, first_ts, last_ts
    #[arg(long, help_heading = "Digest")]
    pub digest: bool,

    /// With --digest on a stream, also send the digest every INTERVAL (e.g. 1h, 1d) when
    /// records came in since the last one (without --every, the digest at the end of the input
    /// is sent even when there were no records, saying so)
    #[arg(long, value_name = "INTERVAL", requires = "digest", help_heading = "Digest")]
    pub every: Option<Interval>,

    /// How many records of each list (errors, warnings, details) a digest shows whole
    #[arg(long, value_name = "N", default_value_t = 50, help_heading = "Digest")]
    pub digest_limit: usize,

    /// Send at most N messages in any minute; the rest are not sent and their records say so
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..), help_heading = "Delivery")]
    pub max_per_minute: Option<u32>,

    /// Give up on an attempt after this many seconds (connect to last byte)
    #[arg(long, value_name = "SECONDS", default_value_t = 15.0, help_heading = "Delivery")]
    pub timeout: f64,

    /// Retries after a network error, a timeout or a 5xx/429 answer
    #[arg(long, value_name = "N", default_value_t = 3, help_heading = "Delivery")]
    pub retries: u32,

    /// Seconds before the first retry; each further retry waits twice as long (up to 60 s)
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0, help_heading = "Delivery")]
    pub retry_delay: f64,

    /// The longest Retry-After (seconds) worth waiting for; a longer one fails the message
    #[arg(long, value_name = "SECONDS", default_value_t = 300, help_heading = "Delivery")]
    pub max_retry_after: u64,

    /// Trust the CA certificates in this PEM file (instead of the built-in roots) for HTTPS
    #[arg(long, value_name = "FILE", help_heading = "Delivery")]
    pub ca_cert: Option<PathBuf>,

    /// Print the messages that would be sent to standard error and send nothing
    #[arg(long, help_heading = "Delivery")]
    pub dry_run: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl opsline::Tool for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}
