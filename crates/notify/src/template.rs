//! Message texts: minijinja templates over a record's fields (or over a digest), with filters
//! for sizes and durations, and built-in texts per record kind.

use std::path::Path;

use minijinja::value::Value;
use minijinja::{Environment, ErrorKind, UndefinedBehavior};

/// Which text of a message a template writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The e-mail subject.
    Subject,
    /// The title of a push or chat message (defaults to the subject).
    Title,
    /// The message text.
    Body,
}

impl Part {
    fn builtin(self, digest: bool) -> &'static str {
        match (self, digest) {
            (Part::Subject | Part::Title, false) => "builtin:subject",
            (Part::Body, false) => "builtin:body",
            (Part::Subject | Part::Title, true) => "builtin:digest-subject",
            (Part::Body, true) => "builtin:digest-body",
        }
    }
}

/// Where a user's template comes from, for naming it in errors.
#[derive(Debug, Clone)]
pub struct Source {
    /// How errors name it: `--subject`, or the file's path.
    pub name: String,
    /// The template text.
    pub text: String,
}

impl Source {
    /// A template given inline by an option.
    pub fn inline(option: &str, text: &str) -> Self {
        Source { name: option.to_owned(), text: text.to_owned() }
    }

    /// A template read from a file.
    pub fn file(path: &Path) -> std::io::Result<Self> {
        Ok(Source { name: path.display().to_string(), text: std::fs::read_to_string(path)? })
    }
}

/// The user's templates, each optional.
#[derive(Debug, Clone, Default)]
pub struct UserTemplates {
    /// `--subject`.
    pub subject: Option<Source>,
    /// `--title`.
    pub title: Option<Source>,
    /// `--body` or `--body-file`.
    pub body: Option<Source>,
    /// `--url` (Pushover's supplementary link).
    pub url: Option<Source>,
    /// `--webhook-template`: a JSON payload.
    pub payload: Option<Source>,
    /// `--when`: an expression that picks the records to notify about.
    pub when: Option<String>,
}

/// A compiled set of templates.
#[derive(Debug)]
pub struct Templates {
    env: Environment<'static>,
    subject: Option<String>,
    title: Option<String>,
    body: Option<String>,
    url: Option<String>,
    payload: Option<String>,
    when: Option<String>,
    digest: bool,
}

/// The rendered texts of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Texts {
    /// E-mail subject.
    pub subject: String,
    /// Push/chat title.
    pub title: String,
    /// Message text.
    pub body: String,
    /// Supplementary link (Pushover), if a template gave one.
    pub url: Option<String>,
}

/// A template that does not compile or render; its text names the template and line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

impl Templates {
    /// Compiles the built-in and the user's templates; `digest` picks the digest texts as
    /// defaults. A syntax error names the template and its line.
    pub fn new(user: UserTemplates, digest: bool) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_keep_trailing_newline(true);
        add_filters(&mut env);
        for (name, text) in BUILTIN {
            env.add_template(name, text).map_err(|e| describe(&e))?;
        }
        let mut add = |source: Option<Source>| -> Result<Option<String>, TemplateError> {
            let Some(source) = source else { return Ok(None) };
            env.add_template_owned(source.name.clone(), source.text).map_err(|e| describe(&e))?;
            Ok(Some(source.name))
        };
        Ok(Templates {
            subject: add(user.subject)?,
            title: add(user.title)?,
            body: add(user.body)?,
            url: add(user.url)?,
            payload: add(user.payload)?,
            when: add(user.when.map(|expr| Source::inline("--when", &when_template(&expr))))?,
            env,
            digest,
        })
    }

    /// Renders subject, title, body and link over `context` (a record's fields, or a digest).
    pub fn render(&self, context: &Value) -> Result<Texts, TemplateError> {
        let subject = self.render_part(Part::Subject, self.subject.as_deref(), context)?;
        let title = match &self.title {
            Some(_) => self.render_part(Part::Title, self.title.as_deref(), context)?,
            None => subject.clone(),
        };
        let body = self.render_part(Part::Body, self.body.as_deref(), context)?;
        let url = match &self.url {
            Some(name) => Some(self.render_named(name, context)?.trim().to_owned()),
            None => None,
        }
        .filter(|u| !u.is_empty());
        Ok(Texts { subject: one_line(&subject), title: one_line(&title), body, url })
    }

    /// True when the record's context passes `--when` (or there is none).
    pub fn wanted(&self, context: &Value) -> Result<bool, TemplateError> {
        match &self.when {
            Some(name) => Ok(self.render_named(name, context)? == "1"),
            None => Ok(true),
        }
    }

    /// Renders the `--webhook-template` payload, which must come out as JSON.
    pub fn render_payload(&self, context: &Value) -> Option<Result<Vec<u8>, TemplateError>> {
        let name = self.payload.as_deref()?;
        Some(self.render_named(name, context).and_then(|text| {
            serde_json::from_str::<serde_json::Value>(&text).map_err(|e| {
                TemplateError(format!(
                    "template {name} did not render valid JSON: {e} (line {} of the output)",
                    e.line()
                ))
            })?;
            Ok(text.into_bytes())
        }))
    }

    fn render_part(
        &self,
        part: Part,
        user: Option<&str>,
        context: &Value,
    ) -> Result<String, TemplateError> {
        self.render_named(user.unwrap_or(part.builtin(self.digest)), context)
    }

    fn render_named(&self, name: &str, context: &Value) -> Result<String, TemplateError> {
        let template = self.env.get_template(name).map_err(|e| describe(&e))?;
        template.render(context).map_err(|e| describe(&e))
    }
}

/// `--when EXPR` as a template that renders `1` when the expression is true; on one line, so
/// errors point at line 1 of the expression.
fn when_template(expression: &str) -> String {
    format!("{{% if {expression} %}}1{{% endif %}}")
}

/// The context a record's templates see: its fields at the top level, the whole record as
/// `record`, and its `status` (`ok`, `warning`, `error`).
pub fn record_context(record: &opsline::Record) -> Value {
    let status = crate::digest::Status::of(record).as_str();
    let fields = Value::from_serialize(record.as_map());
    minijinja::context! { record => fields.clone(), status => status, ..fields }
}

/// "template NAME, line N: what went wrong".
fn describe(error: &minijinja::Error) -> TemplateError {
    let name = error.name().unwrap_or("?");
    let line = error.line().map(|l| format!(", line {l}")).unwrap_or_default();
    let what = match error.kind() {
        ErrorKind::SyntaxError => "syntax error",
        ErrorKind::UnknownFilter => "unknown filter",
        ErrorKind::UnknownFunction => "unknown function",
        ErrorKind::UnknownTest => "unknown test",
        ErrorKind::InvalidOperation => "invalid operation",
        ErrorKind::UndefinedError => "undefined value",
        _ => "error",
    };
    let detail = error.detail().map(|d| format!(": {d}")).unwrap_or_default();
    let mut text = format!("template {name}{line}: {what}{detail}");
    if let Some(cause) = std::error::Error::source(error) {
        text.push_str(&format!(" ({cause})"));
    }
    TemplateError(text)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn add_filters(env: &mut Environment<'static>) {
    env.add_filter("size", size);
    env.add_filter("duration", duration);
    env.add_filter("basename", basename);
    env.add_filter("summary", summary);
}

/// `{{ bytes | size }}` → `1.5 MiB`; text that is not a number is shown as is.
fn size(value: Value) -> String {
    match as_f64(&value) {
        Some(bytes) => format_size(bytes),
        None => text_of(&value),
    }
}

/// `{{ seconds | duration }}` → `1h 02m 03s`; text that is not a number is shown as is.
fn duration(value: Value) -> String {
    match as_f64(&value) {
        Some(seconds) => format_duration(seconds),
        None => text_of(&value),
    }
}

/// `{{ path | basename }}` → the last component of a path.
fn basename(value: Value) -> String {
    let text = text_of(&value);
    Path::new(&text).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or(text)
}

/// `{{ record | summary }}` → one line about a record: kind, path and error or status.
fn summary(value: Value) -> String {
    let field =
        |name: &str| value.get_attr(name).ok().filter(|v| !v.is_undefined() && !v.is_none());
    let mut line = field("kind").map(|k| text_of(&k)).unwrap_or_else(|| "record".to_owned());
    if let Some(name) = field("path").or_else(|| remote_name(&value)) {
        line.push(' ');
        line.push_str(&text_of(&name));
    }
    if let Some(error) = field("error") {
        let tool = error.get_attr("tool").map(|t| text_of(&t)).unwrap_or_default();
        let message = error.get_attr("message").map(|m| text_of(&m)).unwrap_or_default();
        line.push_str(&format!(": {tool}: {message}"));
    } else if let Some(warning) = crate::digest::warning_text(&value) {
        line.push_str(&format!(": {warning}"));
    }
    line
}

/// The server-side name a tool gave a file that has no local `path` (ship-sftp's pruned
/// records name the deleted archive as `sftp.remote`).
fn remote_name(value: &Value) -> Option<Value> {
    value.try_iter().ok()?.find_map(|key| {
        let remote = value.get_item(&key).ok()?.get_attr("remote").ok()?;
        (!remote.is_undefined() && !remote.is_none()).then_some(remote)
    })
}

fn as_f64(value: &Value) -> Option<f64> {
    if value.is_number() {
        return f64::try_from(value.clone()).ok();
    }
    value.as_str().and_then(|s| s.trim().parse().ok())
}

fn text_of(value: &Value) -> String {
    if value.is_undefined() || value.is_none() {
        return String::new();
    }
    value.as_str().map(str::to_owned).unwrap_or_else(|| value.to_string())
}

/// Binary units, one decimal from KiB up: `999 B`, `1.5 KiB`, `3.2 GiB`.
pub fn format_size(bytes: f64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes.abs() < 1024.0 {
        return format!("{bytes:.0} B");
    }
    let mut value = bytes / 1024.0;
    let mut unit = 0;
    while value.abs() >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// `0.4 s`, `42 s`, `3m 07s`, `2h 05m 00s`, `3d 04h 00m`.
pub fn format_duration(seconds: f64) -> String {
    if seconds < 10.0 {
        return format!("{seconds:.1} s");
    }
    let total = seconds.round() as u64;
    let (days, hours, minutes, secs) =
        (total / 86_400, total / 3600 % 24, total / 60 % 60, total % 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{secs} s"),
        (0, 0, _) => format!("{minutes}m {secs:02}s"),
        (0, _, _) => format!("{hours}h {minutes:02}m {secs:02}s"),
        _ => format!("{days}d {hours:02}h {minutes:02}m"),
    }
}

/// The built-in texts. Errors come first; then the kinds the other opsline tools write.
const BUILTIN: [(&str, &str); 4] = [
    ("builtin:subject", include_str!("templates/subject.j2")),
    ("builtin:body", include_str!("templates/body.j2")),
    ("builtin:digest-subject", include_str!("templates/digest-subject.j2")),
    ("builtin:digest-body", include_str!("templates/digest-body.j2")),
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(value: serde_json::Value) -> opsline::Record {
        opsline::Record::from_map(value.as_object().unwrap().clone())
    }

    fn texts(user: UserTemplates, value: serde_json::Value) -> Texts {
        Templates::new(user, false).unwrap().render(&record_context(&record(value))).unwrap()
    }

    #[test]
    fn summaries_name_remote_files_that_have_no_path() {
        let pruned = Value::from_serialize(
            json!({"kind": "pruned", "sftp": {"host": "h", "remote": "/b/20261014.tgz"}}),
        );
        assert_eq!(summary(pruned), "pruned /b/20261014.tgz");
        let shipped = Value::from_serialize(
            json!({"kind": "shipped", "path": "/l/a.tgz", "sftp": {"remote": "/b/a.tgz"}}),
        );
        assert_eq!(summary(shipped), "shipped /l/a.tgz");
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(format_size(512.0), "512 B");
        assert_eq!(format_size(1536.0), "1.5 KiB");
        assert_eq!(format_size(3.5 * 1024.0 * 1024.0 * 1024.0), "3.5 GiB");
        assert_eq!(format_duration(0.42), "0.4 s");
        assert_eq!(format_duration(42.0), "42 s");
        assert_eq!(format_duration(187.0), "3m 07s");
        assert_eq!(format_duration(7500.0), "2h 05m 00s");
        assert_eq!(format_duration(273_600.0), "3d 04h 00m");
    }

    #[test]
    fn user_templates_see_fields_and_filters() {
        let user = UserTemplates {
            subject: Some(Source::inline("--subject", "{{ path | basename }} for {{ user.name }}")),
            body: Some(Source::inline(
                "--body",
                "{{ video.metadata.size | size }} {{ video.metadata.duration | duration }} {{ status }}",
            )),
            ..UserTemplates::default()
        };
        let t = texts(
            user,
            json!({"kind": "video", "path": "/srv/out/clip.flv", "user": {"name": "Ann"},
                   "video": {"metadata": {"size": 2_621_440, "duration": "125.2"}}}),
        );
        assert_eq!(t.subject, "clip.flv for Ann");
        assert_eq!(t.title, t.subject);
        assert_eq!(t.body, "2.5 MiB 2m 05s ok");
    }

    #[test]
    fn builtin_texts_put_errors_first_and_know_the_kinds() {
        let t = texts(
            UserTemplates::default(),
            json!({"kind": "video", "path": "/o/a.flv", "error": {"tool": "convert-video", "message": "moov atom not found"}}),
        );
        assert!(t.subject.starts_with("[error]"), "{}", t.subject);
        assert!(t.subject.contains("moov atom not found"), "{}", t.subject);
        assert!(t.body.starts_with("convert-video failed on /o/a.flv"), "{}", t.body);

        let t = texts(
            UserTemplates::default(),
            json!({"kind": "video", "path": "/o/a.flv", "user": {"name": "Ann"},
                   "video": {"source": "/in/a.mp4", "thumbnail": "/o/a.png", "metadata": {"duration": 61, "size": 1048576, "width": 640, "height": 360}}}),
        );
        assert_eq!(t.subject, "Your video is ready: a.mp4");
        assert!(t.body.contains("Hello Ann"), "{}", t.body);
        assert!(t.body.contains("1m 01s") && t.body.contains("1.0 MiB"), "{}", t.body);
        assert!(t.body.contains("640x360"), "{}", t.body);

        let t = texts(
            UserTemplates::default(),
            json!({"kind": "line", "sshd": {"event": "accepted", "user": "root", "ip": "203.0.113.9", "method": "publickey"}}),
        );
        assert_eq!(t.subject, "SSH login accepted: root from 203.0.113.9");

        let t = texts(UserTemplates::default(), json!({"kind": "mystery", "n": 1}));
        assert_eq!(t.subject, "mystery");
        assert!(t.body.contains("\"n\": 1"), "{}", t.body);
    }

    #[test]
    fn syntax_errors_name_the_template_and_line() {
        let user = UserTemplates {
            body: Some(Source::inline("body.txt", "Hello\n{{ user.name }\nbye")),
            ..UserTemplates::default()
        };
        let e = Templates::new(user, false).unwrap_err().to_string();
        assert!(e.starts_with("template body.txt, line 2: syntax error"), "{e}");
    }

    #[test]
    fn render_errors_name_the_template_and_line() {
        let user = UserTemplates {
            body: Some(Source::inline("--body", "ok\n\n{{ path | nosuchfilter }}")),
            ..UserTemplates::default()
        };
        let templates = Templates::new(user, false).unwrap();
        let e = templates.render(&record_context(&record(json!({"path": "/x"})))).unwrap_err();
        assert!(e.to_string().starts_with("template --body, line 3: unknown filter"), "{e}");
    }

    #[test]
    fn when_picks_records() {
        let user = UserTemplates {
            when: Some("sshd.event == \"accepted\" or error".to_owned()),
            ..UserTemplates::default()
        };
        let templates = Templates::new(user, false).unwrap();
        let wanted = |v| templates.wanted(&record_context(&record(v))).unwrap();
        assert!(wanted(json!({"sshd": {"event": "accepted"}})));
        assert!(!wanted(json!({"sshd": {"event": "failed"}})));
        assert!(!wanted(json!({"kind": "line"})));
        assert!(wanted(json!({"kind": "line", "error": {"tool": "t", "message": "m"}})));
        let bad = UserTemplates { when: Some("kind ==".to_owned()), ..UserTemplates::default() };
        let e = Templates::new(bad, false).unwrap_err().to_string();
        assert!(e.starts_with("template --when, line 1: syntax error"), "{e}");
    }

    #[test]
    fn payload_templates_must_render_json() {
        let user = UserTemplates {
            payload: Some(Source::inline("hook.json", "{\"file\": {{ path | tojson }}, \"x\": }")),
            ..UserTemplates::default()
        };
        let templates = Templates::new(user, false).unwrap();
        let ctx = record_context(&record(json!({"path": "/x"})));
        let e = templates.render_payload(&ctx).unwrap().unwrap_err().to_string();
        assert!(e.contains("hook.json did not render valid JSON"), "{e}");
    }
}
