//! From the command line to channels: secrets resolved from files or the environment, options
//! checked together, templates compiled before the first record is read.

use std::path::Path;
use std::time::Duration;

use opsline::{Code, Context, Secret, WithCode};

use crate::channel::Channel;
use crate::channel::email::{self, Email};
use crate::channel::mattermost::Mattermost;
use crate::channel::pushover::Pushover;
use crate::channel::webhook::{Format, Webhook};
use crate::http::Http;
use crate::limit::RateLimit;
use crate::notifier::{Addressing, Notifier, addresses};
use crate::options::Cli;
use crate::redact::Redactor;
use crate::retry::Retry;
use crate::template::{Source, Templates, UserTemplates};

fn usage(message: impl Into<String>) -> anyhow::Error {
    opsline::exit::err(Code::Usage, message.into())
}

fn config(message: impl Into<String>) -> anyhow::Error {
    opsline::exit::err(Code::Config, message.into())
}

/// Checks the options, reads the secrets and compiles the templates: the HTTP client, and what
/// the [`Notifier`] is built from once the client has a home to borrow from.
pub fn prepare(cli: &Cli, ctx: &Context) -> anyhow::Result<(Http, NotifierParts)> {
    check_options(cli)?;
    let tool = ctx.tool;
    let mut redactor = Redactor::default();
    let mut remember = |secret: Option<Secret>| {
        if let Some(s) = &secret {
            redactor.add(s);
        }
        secret
    };
    let smtp_password =
        remember(Secret::resolve(tool, "smtp-password", cli.smtp_password_file.as_deref())?);
    let mattermost_url = if cli.mattermost {
        let url =
            remember(Secret::resolve(tool, "mattermost-url", cli.mattermost_url_file.as_deref())?);
        Some(url.ok_or_else(|| config("--mattermost needs the webhook URL in --mattermost-url-file or NOTIFY_MATTERMOST_URL"))?)
    } else {
        None
    };
    let pushover = if cli.pushover {
        let token = remember(Secret::resolve(tool, "pushover-token", cli.pushover_token_file.as_deref())?)
                .ok_or_else(|| config("--pushover needs the application token in --pushover-token-file or NOTIFY_PUSHOVER_TOKEN"))?;
        let user = remember(Secret::resolve(
            tool,
            "pushover-user",
            cli.pushover_user_file.as_deref(),
        )?)
        .ok_or_else(|| {
            config("--pushover needs the user key in --pushover-user-file or NOTIFY_PUSHOVER_USER")
        })?;
        Some((token, user))
    } else {
        None
    };
    let webhook = match (&cli.webhook, &cli.webhook_url_file) {
        (Some(url), _) => Some((Secret::new(url.clone()), true)),
        (None, Some(file)) => {
            Some((remember(Some(Secret::from_file(file)?)).expect("given"), false))
        }
        (None, None) => None,
    };
    let mut headers = parse_headers(&cli.header)?
        .into_iter()
        .map(|(name, value)| (name, Secret::new(value)))
        .collect::<Vec<_>>();
    if let Some(file) = &cli.header_file {
        for (name, value) in read_header_file(file)? {
            let value = remember(Some(Secret::new(value))).expect("given");
            headers.push((name, value));
        }
    }
    let retry = Retry {
        retries: cli.retries,
        delay: seconds(cli.retry_delay, "--retry-delay")?,
        max_retry_after: Duration::from_secs(cli.max_retry_after),
        shutdown: ctx.shutdown.clone(),
    };
    let timeout = seconds(cli.timeout, "--timeout")?;
    let email = match &cli.smtp {
        Some(url) => Some(Email::new(
            email::Settings {
                url,
                insecure: cli.smtp_insecure,
                user: cli.smtp_user.as_deref(),
                password: smtp_password,
                ca_cert: cli.smtp_ca_cert.as_deref(),
                from: cli.from.as_deref().ok_or_else(|| usage("--smtp needs --from"))?,
                timeout,
            },
            retry.clone(),
            redactor.clone(),
        )?),
        None => None,
    };
    let http = Http::new(timeout, cli.ca_cert.as_deref(), retry, redactor)?;
    let parts = NotifierParts {
        email,
        mattermost_url,
        pushover,
        webhook,
        headers,
        templates: compile_templates(cli)?,
        addressing: addressing(cli)?,
        limit: cli.max_per_minute.map(RateLimit::per_minute),
    };
    Ok((http, parts))
}

/// Whom to write to and what to attach.
fn addressing(cli: &Cli) -> anyhow::Result<Addressing> {
    Ok(Addressing {
        to: cli
            .to
            .iter()
            .filter(|t| !t.trim().is_empty())
            .map(|t| addresses(&t.as_str().into()).map_err(|e| usage(format!("--to: {e}"))))
            .collect::<anyhow::Result<Vec<_>>>()?
            .into_iter()
            .flatten()
            .collect(),
        to_field: cli.to_field.clone(),
        attach: cli.attach.clone(),
        attach_fields: cli.attach_field.clone(),
        max_attachment: cli.max_attachment_size,
    })
}

/// What a [`Notifier`] is built from.
#[derive(Debug)]
pub struct NotifierParts {
    email: Option<Email>,
    mattermost_url: Option<Secret>,
    pushover: Option<(Secret, Secret)>,
    webhook: Option<(Secret, bool)>,
    headers: Vec<(String, Secret)>,
    templates: Templates,
    addressing: Addressing,
    limit: Option<RateLimit>,
}

impl NotifierParts {
    /// The notifier, its HTTP channels borrowing `http`.
    pub fn build<'h>(self, cli: &Cli, http: &'h Http) -> Notifier<'h> {
        let mut channels: Vec<Box<dyn Channel + 'h>> = Vec::new();
        if let Some(email) = self.email {
            channels.push(Box::new(email));
        }
        if let Some(url) = self.mattermost_url {
            channels.push(Box::new(Mattermost {
                url,
                channel: cli.channel.clone(),
                username: cli.username.clone(),
                icon_url: cli.icon_url.clone(),
                http,
            }));
        }
        if let Some((token, user)) = self.pushover {
            channels.push(Box::new(Pushover {
                api: cli.pushover_api.clone(),
                token,
                user,
                priority: cli.priority,
                sound: cli.sound.clone(),
                http,
            }));
        }
        if let Some((url, url_public)) = self.webhook {
            let format =
                if cli.webhook_template.is_some() { Format::Template } else { cli.webhook_format };
            channels.push(Box::new(Webhook {
                url,
                url_public,
                format,
                headers: self.headers,
                channel: cli.channel.clone(),
                username: cli.username.clone(),
                icon_url: cli.icon_url.clone(),
                http,
            }));
        }
        Notifier::new(channels, self.templates, self.addressing, self.limit, cli.dry_run)
    }
}

fn check_options(cli: &Cli) -> anyhow::Result<()> {
    let webhook = cli.webhook.is_some() || cli.webhook_url_file.is_some();
    if cli.smtp.is_none() && !cli.mattermost && !cli.pushover && !webhook {
        return Err(usage("no channel: give --smtp, --mattermost, --pushover or --webhook"));
    }
    if cli.smtp.is_some() && cli.to.is_empty() && cli.to_field.is_none() {
        return Err(usage("--smtp needs recipients: --to or --to-field"));
    }
    if cli.digest && (cli.to_field.is_some() || !cli.attach_field.is_empty()) {
        return Err(usage(
            "--to-field and --attach-field pick values from one record; a --digest uses --to and --attach",
        ));
    }
    if cli.webhook_format == Format::Template && cli.webhook_template.is_none() {
        return Err(usage("--webhook-format template needs --webhook-template FILE"));
    }
    Ok(())
}

fn compile_templates(cli: &Cli) -> anyhow::Result<Templates> {
    let read = |path: &Path, option: &str| {
        Source::file(path)
            .with_code(Code::Config, || format!("cannot read {option} {}", path.display()))
    };
    let user = UserTemplates {
        subject: cli.subject.as_deref().map(|t| Source::inline("--subject", t)),
        title: cli.title.as_deref().map(|t| Source::inline("--title", t)),
        body: match (&cli.body, &cli.body_file) {
            (Some(text), _) => Some(Source::inline("--body", text)),
            (None, Some(path)) => Some(read(path, "--body-file")?),
            (None, None) => None,
        },
        url: cli.url.as_deref().map(|t| Source::inline("--url", t)),
        payload: cli
            .webhook_template
            .as_deref()
            .map(|p| read(p, "--webhook-template"))
            .transpose()?,
        when: cli.when.clone(),
    };
    Templates::new(user, cli.digest).map_err(|e| config(e.to_string()))
}

fn seconds(value: f64, option: &str) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() || option == "--retry-delay")
        .ok_or_else(|| usage(format!("{option} {value}: expected a positive number of seconds")))
}

/// Secret files should be private, as ssh insists for keys.
fn warn_if_shared(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if std::fs::metadata(path).is_ok_and(|m| m.permissions().mode() & 0o077 != 0) {
        tracing::warn!(file = %path.display(), "secret file is readable by other users; chmod 600 it");
    }
}

/// `Name: value` headers.
fn parse_headers(lines: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    lines
        .iter()
        .map(|line| {
            let (name, value) = line
                .split_once(':')
                .filter(|(n, _)| is_token(n.trim()))
                .ok_or_else(|| usage(format!("--header {line:?}: expected \"Name: value\"")))?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// The header file's lines; values are secrets, so errors name the line, never its text.
fn read_header_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    warn_if_shared(path);
    let text = std::fs::read_to_string(path)
        .with_code(Code::Config, || format!("cannot read --header-file {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'))
        .map(|(n, line)| {
            let (name, value) = line
                .split_once(':')
                .filter(|(name, _)| is_token(name.trim()))
                .ok_or_else(|| {
                    config(format!("{}, line {}: expected \"Name: value\"", path.display(), n + 1))
                })?;
            Ok((name.trim().to_owned(), value.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_need_a_name_and_a_colon() {
        let ok = parse_headers(&["X-Token: abc".into(), "Accept:x".into()]).unwrap();
        assert_eq!(ok, [("X-Token".into(), "abc".into()), ("Accept".into(), "x".into())]);
        assert!(parse_headers(&["no colon".into()]).is_err());
        assert!(parse_headers(&["bad name: x".into()]).is_err());
    }

    #[test]
    fn header_file_errors_do_not_quote_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("headers");
        std::fs::write(&path, "# tokens\nAuthorization: Bearer s3cr3t\nbroken s3cr3t line\n")
            .unwrap();
        let e = read_header_file(&path).unwrap_err().to_string();
        assert!(e.contains("line 3") && !e.contains("s3cr3t"), "{e}");
    }
}
