//! Runs the five opsline workflows for real on 127.0.0.1 servers and sample data, and prints
//! what arrived. Exits non-zero when any workflow fails.

use std::io::Write as _;
use std::process::ExitCode;
use std::time::Instant;

use opsline_workflows::Lab;
use opsline_workflows::workflows::{backup, license, log_archive, ssh_alarm, video};

/// A workflow's summary as text, and what in it differs from what the workflow promises.
type Outcome = (String, Vec<String>);

/// A workflow: its title, its commands and how to run it.
struct Workflow {
    title: &'static str,
    commands: &'static [&'static str],
    run: fn(&Lab) -> anyhow::Result<Outcome>,
}

const WORKFLOWS: &[Workflow] = &[
    Workflow {
        title: "1. Video uploads",
        commands: &[video::COMMAND],
        run: |lab| video::run(lab).map(|s| (s.to_string(), s.problems())),
    },
    Workflow {
        title: "2. Nightly backup",
        commands: &[backup::COMMAND],
        run: |lab| backup::run(lab).map(|s| (s.to_string(), s.problems())),
    },
    Workflow {
        title: "2b. Nightly backup, the same pipeline on a night the dump is stale",
        commands: &[],
        run: |lab| backup::run_stale(lab).map(|s| (s.to_string(), s.problems())),
    },
    Workflow {
        title: "3. Log archive",
        commands: &[log_archive::MIRROR_COMMAND, log_archive::SEARCH_COMMAND],
        run: |lab| log_archive::run(lab).map(|s| (s.to_string(), s.problems())),
    },
    Workflow {
        title: "3b. Log archive agent as a service (--every)",
        commands: &[log_archive::SERVICE_COMMAND],
        run: |lab| log_archive::run_service(lab).map(|s| (s.to_string(), s.problems())),
    },
    Workflow {
        title: "4. SSH alarm",
        commands: &[ssh_alarm::COMMAND],
        run: |lab| ssh_alarm::run(lab).map(|s| (s.to_string(), s.problems())),
    },
    Workflow {
        title: "4b. SSH alarm as a service (log-tail --follow)",
        commands: &[ssh_alarm::FOLLOW_COMMAND],
        run: |lab| ssh_alarm::run_follow(lab).map(|s| (s.to_string(), s.problems())),
    },
    Workflow {
        title: "5. License usage",
        commands: &[license::REPORT_COMMAND, license::CONNECTED_COMMAND],
        run: |lab| license::run(lab).map(|s| (s.to_string(), s.problems())),
    },
];

fn main() -> ExitCode {
    let started = Instant::now();
    log("starting sshd, SMTP, HTTPS and HTTP servers on 127.0.0.1");
    let lab = match Lab::start() {
        Ok(lab) => lab,
        Err(error) => {
            log(&format!("error: {error:#}"));
            return ExitCode::FAILURE;
        }
    };
    log(&format!("work folder {}", lab.work().display()));
    let mut failed = Vec::new();
    for workflow in WORKFLOWS {
        log(&format!("running {}", workflow.title));
        let step = Instant::now();
        let result = (workflow.run)(&lab);
        let seconds = step.elapsed().as_secs_f64();
        match result {
            Ok((summary, problems)) if problems.is_empty() => show(workflow, &summary, seconds),
            Ok((summary, problems)) => {
                for problem in &problems {
                    log(&format!("error: {}: {problem}", workflow.title));
                }
                show(workflow, &format!("{summary}\nFAILED: {}", problems.join("; ")), seconds);
                failed.push(workflow.title);
            }
            Err(error) => {
                log(&format!("error: {} failed: {error:#}", workflow.title));
                show(workflow, &format!("FAILED: {error}"), seconds);
                failed.push(workflow.title);
            }
        }
    }
    drop(lab);
    let total = started.elapsed().as_secs_f64();
    if failed.is_empty() {
        out(&format!("All workflows worked ({total:.0}s)."));
        ExitCode::SUCCESS
    } else {
        out(&format!("FAILED: {} ({total:.0}s); see the log above.", failed.join(", ")));
        ExitCode::FAILURE
    }
}

fn show(workflow: &Workflow, summary: &str, seconds: f64) {
    let mut text = format!("== {} ({seconds:.1}s)\n", workflow.title);
    for command in workflow.commands {
        text.push_str(&format!("$ {command}\n"));
    }
    for line in summary.lines() {
        text.push_str(&format!("  {line}\n"));
    }
    out(&text);
}

/// The summary goes to standard output.
fn out(text: &str) {
    let mut stdout = std::io::stdout().lock();
    let _ = writeln!(stdout, "{text}");
    let _ = stdout.flush();
}

/// Progress goes to standard error.
fn log(message: &str) {
    let _ = writeln!(std::io::stderr().lock(), "opsline-demo: {message}");
}
