//! Workflow 4, SSH alarm: every 5 minutes cron runs `log-tail | notify --pushover` on
//! auth.log (or a service runs it with `log-tail --follow`); each login or failed password
//! reaches the admin's phone once, also across a rotation of the log, and the routine noise
//! never does.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use opsline_testkit::net::wait_until;

use crate::lab::{Lab, PUSHOVER_PATH, RUN_TIMEOUT};
use crate::sample;
use crate::shell::{Pipeline, Run};

/// The pipeline, as the crontab line runs it.
pub const COMMAND: &str = "log-tail \"$AUTH_LOG\" --exclude CRON --parse sshd --match 'Accepted|Failed' --state \"$STATE\" \
| notify --pushover --pushover-api \"$PUSHOVER_API\" --pushover-token-file \"$PUSHOVER_TOKEN_FILE\" \
--pushover-user-file \"$PUSHOVER_USER_FILE\" --max-per-minute 10";

/// The pipeline, as `ssh-alarm.service` runs it.
pub const FOLLOW_COMMAND: &str = "log-tail --follow \"$AUTH_LOG\" --exclude CRON --parse sshd --match 'Accepted|Failed' --state \"$STATE\" \
| notify --pushover --pushover-api \"$PUSHOVER_API\" --pushover-token-file \"$PUSHOVER_TOKEN_FILE\" \
--pushover-user-file \"$PUSHOVER_USER_FILE\" --max-per-minute 10";

/// The server's name in the log lines.
pub const HOST: &str = "files";

/// Lines written before each cron run: (first line number, count). The log is rotated after
/// the second batch, before the third, and the second run reads both.
const BATCHES: [(usize, usize); 3] = [(0, 8), (8, 8), (16, 8)];

/// Lines written while the service follows the log, rotated after the second batch; fewer
/// alarms than --max-per-minute allows in the minute they all come in.
const FOLLOW_BATCHES: [(usize, usize); 3] = [(0, 8), (8, 4), (12, 4)];

/// How long the service may take to push what was written.
const PUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// What arrived.
#[derive(Debug)]
pub struct AlarmSummary {
    /// Whether the pipeline ran as a service (`--follow`) rather than from cron.
    pub follow: bool,
    /// The runs: from cron before the rotation, after it, and one with nothing new; or the
    /// service's one run, stopped with SIGTERM to log-tail.
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

/// An auth.log and the pipeline on it.
struct Alarm {
    auth_log: PathBuf,
    pipeline: Pipeline,
    written: Vec<String>,
    /// Pushover requests before this pipeline ran.
    pushes_before: usize,
}

impl Alarm {
    fn new(lab: &Lab, name: &str, command: &str) -> anyhow::Result<Self> {
        let auth_log = lab.dir(&format!("var/log/{name}"))?.join("auth.log");
        let pipeline = Pipeline::new(command)
            .var("AUTH_LOG", &auth_log)
            .var("STATE", lab.work().join(format!("state/{name}-auth-log.json")))
            .var("PUSHOVER_API", lab.api.base_url())
            .var("PUSHOVER_TOKEN_FILE", lab.secret("pushover-token", TOKEN)?)
            .var("PUSHOVER_USER_FILE", lab.secret("pushover-user", USER_KEY)?);
        let pushes_before = lab.api_requests(PUSHOVER_PATH).len();
        Ok(Self { auth_log, pipeline, written: Vec::new(), pushes_before })
    }

    fn write(&mut self, (first, count): (usize, usize)) -> anyhow::Result<()> {
        let lines = sample::auth_lines(HOST, first, count);
        sample::append_lines(&self.auth_log, &lines)?;
        self.written.extend(lines);
        Ok(())
    }

    fn alarms_written(&self) -> usize {
        self.written.iter().filter(|line| is_alarm(line)).count()
    }

    fn pushed(&self, lab: &Lab) -> usize {
        lab.api_requests(PUSHOVER_PATH).len() - self.pushes_before
    }

    fn summary(
        self,
        lab: &Lab,
        follow: bool,
        runs: Vec<Run>,
        pushed_per_run: Vec<usize>,
    ) -> AlarmSummary {
        AlarmSummary {
            follow,
            runs,
            written: self.written,
            pushed: pushes(lab, self.pushes_before),
            pushed_per_run,
        }
    }
}

/// Runs the workflow from cron: three runs, the log rotated between the first two.
pub fn run(lab: &Lab) -> anyhow::Result<AlarmSummary> {
    let mut alarm = Alarm::new(lab, "cron", COMMAND)?;
    let mut runs = Vec::new();
    let mut pushed_per_run = Vec::new();
    alarm.write(BATCHES[0])?;
    one_run(lab, &alarm.pipeline, "ssh-alarm-1", &mut runs, &mut pushed_per_run)?;
    alarm.write(BATCHES[1])?;
    sample::rotate(&alarm.auth_log)?;
    alarm.write(BATCHES[2])?;
    one_run(lab, &alarm.pipeline, "ssh-alarm-2", &mut runs, &mut pushed_per_run)?;
    one_run(lab, &alarm.pipeline, "ssh-alarm-3", &mut runs, &mut pushed_per_run)?;
    Ok(alarm.summary(lab, false, runs, pushed_per_run))
}

/// Runs the workflow as a service: the pipeline follows the log while lines come in and the
/// log is rotated, and stops on SIGTERM to log-tail (as `systemctl stop` sends it).
pub fn run_follow(lab: &Lab) -> anyhow::Result<AlarmSummary> {
    let mut alarm = Alarm::new(lab, "follow", FOLLOW_COMMAND)?;
    alarm.write(FOLLOW_BATCHES[0])?;
    let service = lab.shell.spawn("ssh-alarm-follow", &alarm.pipeline)?;
    let wait_for_pushes = |alarm: &Alarm| {
        let expected = alarm.alarms_written();
        wait_until(PUSH_TIMEOUT, || alarm.pushed(lab) >= expected).with_context(|| {
            format!(
                "{} of {expected} pushes arrived; the service's log:\n{}",
                alarm.pushed(lab),
                service.stderr()
            )
        })
    };
    wait_for_pushes(&alarm)?;
    alarm.write(FOLLOW_BATCHES[1])?;
    sample::rotate(&alarm.auth_log)?;
    alarm.write(FOLLOW_BATCHES[2])?;
    wait_for_pushes(&alarm)?;
    service.terminate("log-tail")?;
    let run = service.wait(RUN_TIMEOUT)?;
    run.ensure_success()?;
    let pushed = alarm.pushed(lab);
    Ok(alarm.summary(lab, true, vec![run], vec![pushed]))
}

fn is_alarm(line: &str) -> bool {
    line.contains("Accepted") || line.contains("Failed")
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

fn pushes(lab: &Lab, skip: usize) -> Vec<Push> {
    lab.api_requests(PUSHOVER_PATH)
        .iter()
        .skip(skip)
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
        .collect()
}

impl AlarmSummary {
    /// The lines the alarm is for: logins and failed passwords, not CRON or closed connections.
    pub fn alarm_lines(&self) -> Vec<&str> {
        self.written.iter().map(String::as_str).filter(|line| is_alarm(line)).collect()
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
        if !self.follow && self.pushed_per_run.last() != Some(&0) {
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
        if self.follow {
            let pushed = self.pushed.len();
            writeln!(f, "the service pushed {pushed} message(s), then stopped on SIGTERM")?;
        } else {
            for (n, count) in self.pushed_per_run.iter().enumerate() {
                writeln!(f, "cron run {}: {count} Pushover message(s)", n + 1)?;
            }
        }
        for push in &self.pushed {
            writeln!(f, "    {}", push.title)?;
        }
        Ok(())
    }
}
