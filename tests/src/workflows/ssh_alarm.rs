//! Workflow 4, SSH alarm: every 5 minutes cron runs `log-tail | notify --pushover` on
//! auth.log; each login or failed password reaches the admin's phone once, also across a
//! rotation of the log between two runs, and the routine noise never does.

use std::fmt;

use crate::lab::{Lab, PUSHOVER_PATH, RUN_TIMEOUT};
use crate::sample;
use crate::shell::{Pipeline, Run};

/// The pipeline, as the crontab line runs it.
pub const COMMAND: &str = "log-tail \"$AUTH_LOG\" --exclude CRON --parse sshd --match 'Accepted|Failed' --state \"$STATE\" \
| notify --pushover --pushover-api \"$PUSHOVER_API\" --pushover-token-file \"$PUSHOVER_TOKEN_FILE\" \
--pushover-user-file \"$PUSHOVER_USER_FILE\" --max-per-minute 10";

/// The server's name in the log lines.
pub const HOST: &str = "files";

/// Lines written before each run: (first line number, count). The log is rotated after the
/// second batch, before the third, and the second run reads both.
const BATCHES: [(usize, usize); 3] = [(0, 8), (8, 8), (16, 8)];

/// What arrived.
#[derive(Debug)]
pub struct AlarmSummary {
    /// The runs: before the rotation, after it, and one with nothing new.
    pub runs: Vec<Run>,
    /// Every line written to the log, in order.
    pub written: Vec<String>,
    /// The Pushover messages, in arrival order.
    pub pushed: Vec<Push>,
    /// How many messages each run sent.
    pub pushed_per_run: Vec<usize>,
}

/// One Pushover message.
#[derive(Clone, Debug)]
pub struct Push {
    /// Its title.
    pub title: String,
    /// Its text.
    pub message: String,
    /// Whether it carried the token and user key from the files.
    pub authenticated: bool,
}

/// The application token and user key in the secret files.
const TOKEN: &str = "azGDORePK8gMaC0QOYAMyEEuzJnyUi";
const USER_KEY: &str = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG";

/// Runs the workflow.
pub fn run(lab: &Lab) -> anyhow::Result<AlarmSummary> {
    let auth_log = lab.dir("var/log")?.join("auth.log");
    let pipeline = Pipeline::new(COMMAND)
        .var("AUTH_LOG", &auth_log)
        .var("STATE", lab.work().join("state/auth-log.json"))
        .var("PUSHOVER_API", lab.api.base_url())
        .var("PUSHOVER_TOKEN_FILE", lab.secret("pushover-token", TOKEN)?)
        .var("PUSHOVER_USER_FILE", lab.secret("pushover-user", USER_KEY)?);

    let mut written = Vec::new();
    let mut runs = Vec::new();
    let mut pushed_per_run = Vec::new();
    let mut write = |batch: (usize, usize)| -> anyhow::Result<()> {
        let lines = sample::auth_lines(HOST, batch.0, batch.1);
        sample::append_lines(&auth_log, &lines)?;
        written.extend(lines);
        Ok(())
    };
    write(BATCHES[0])?;
    one_run(lab, &pipeline, "ssh-alarm-1", &mut runs, &mut pushed_per_run)?;
    write(BATCHES[1])?;
    sample::rotate(&auth_log)?;
    write(BATCHES[2])?;
    one_run(lab, &pipeline, "ssh-alarm-2", &mut runs, &mut pushed_per_run)?;
    one_run(lab, &pipeline, "ssh-alarm-3", &mut runs, &mut pushed_per_run)?;

    Ok(AlarmSummary { runs, written, pushed: pushes(lab)?, pushed_per_run })
}

fn one_run(
    lab: &Lab,
    pipeline: &Pipeline,
    name: &str,
    runs: &mut Vec<Run>,
    pushed_per_run: &mut Vec<usize>,
) -> anyhow::Result<()> {
    let before = lab.api_requests(PUSHOVER_PATH).len();
    runs.push(lab.shell.run_ok(name, pipeline, RUN_TIMEOUT)?);
    // notify answers each record after Pushover answered it: every request is in by now.
    pushed_per_run.push(lab.api_requests(PUSHOVER_PATH).len() - before);
    Ok(())
}

fn pushes(lab: &Lab) -> anyhow::Result<Vec<Push>> {
    Ok(lab
        .api_requests(PUSHOVER_PATH)
        .iter()
        .map(|request| {
            let form = request.form();
            let field = |name: &str| {
                form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default()
            };
            Push {
                title: field("title"),
                message: field("message"),
                authenticated: field("token") == TOKEN && field("user") == USER_KEY,
            }
        })
        .collect())
}

impl AlarmSummary {
    /// The lines the alarm is for: logins and failed passwords, not CRON or closed connections.
    pub fn alarm_lines(&self) -> Vec<&str> {
        self.written
            .iter()
            .map(String::as_str)
            .filter(|line| line.contains("Accepted") || line.contains("Failed"))
            .collect()
    }
}

impl AlarmSummary {
    /// What differs from the workflow's promise: each login or failure pushed exactly once,
    /// nothing else pushed, and a run with nothing new pushes nothing.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let alarms = self.alarm_lines();
        for line in &alarms {
            let count = self.pushes_for(line);
            if count != 1 {
                problems.push(format!("{count} pushes for {line:?}"));
            }
        }
        if self.pushed.len() != alarms.len() {
            problems.push(format!("{} pushes for {} alarm lines", self.pushed.len(), alarms.len()));
        }
        if self.pushed_per_run.last() != Some(&0) {
            problems.push("a run with nothing new pushed something".to_owned());
        }
        problems
    }

    /// How many pushes are about `line` (its event and address).
    pub fn pushes_for(&self, line: &str) -> usize {
        let ip = line.split(" from ").nth(1).and_then(|rest| rest.split(' ').next()).unwrap_or("?");
        let event = if line.contains("Accepted") { "accepted" } else { "failed" };
        let ending = format!(" from {ip}");
        self.pushed.iter().filter(|p| p.title.contains(event) && p.title.ends_with(&ending)).count()
    }
}

impl fmt::Display for AlarmSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "auth.log: {} lines written in 3 batches, rotated after the second; {} are logins or failures",
            self.written.len(),
            self.alarm_lines().len()
        )?;
        for (n, count) in self.pushed_per_run.iter().enumerate() {
            writeln!(f, "run {}: {count} Pushover message(s)", n + 1)?;
        }
        for push in &self.pushed {
            writeln!(f, "    {}", push.title)?;
        }
        Ok(())
    }
}
