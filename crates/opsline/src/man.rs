//! Man pages rendered from a tool's clap definition, with the sections every opsline page has:
//! the environment convention, exit status, examples, and the contract.

use std::fmt::Write as _;

use clap::Command;
use clap_mangen::Man;

use crate::exit::Code;

/// One entry of a page's EXAMPLES section.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    /// What the example does, one sentence.
    pub title: &'static str,
    /// The command line, exactly as it would be typed.
    pub command: &'static str,
}

/// The man pages of a tool: `(file name, roff)`, the main page first, then one page per
/// subcommand (`TOOL-SUB.1`). `command` should come from [`crate::cli::command`], so the
/// environment variables show.
pub fn pages(command: Command, examples: &[Example]) -> Vec<(String, String)> {
    let mut command = command;
    command.build();
    let tool = command.get_name().to_owned();
    let mut pages = vec![(format!("{tool}.1"), page(&command, &tool, examples))];
    for sub in command.get_subcommands().filter(|s| !s.is_hide_set() && s.get_name() != "help") {
        let name = format!("{tool}-{}", sub.get_name());
        let sub = sub.clone().name(name.clone()).bin_name(format!("{tool} {}", sub.get_name()));
        pages.push((format!("{name}.1"), page(&sub, &tool, &[])));
    }
    pages
}

fn page(command: &Command, tool: &str, examples: &[Example]) -> String {
    let man = Man::new(command.clone()).manual("opsline").source("opsline");
    let mut out = Vec::new();
    let rendered = man
        .render_title(&mut out)
        .and_then(|()| man.render_name_section(&mut out))
        .and_then(|()| man.render_synopsis_section(&mut out))
        .and_then(|()| man.render_description_section(&mut out))
        .and_then(|()| man.render_options_section(&mut out))
        .and_then(|()| {
            if command.get_subcommands().next().is_some() {
                man.render_subcommands_section(&mut out)
            } else {
                Ok(())
            }
        });
    rendered.expect("writing to memory cannot fail");
    let mut text = String::from_utf8(out).expect("clap_mangen writes UTF-8");
    text.push_str(&environment_section(tool));
    text.push_str(&exit_section());
    text.push_str(&examples_section(examples));
    text.push_str(".SH SEE ALSO\n\\fBopsline\\fR(7)\n");
    text
}

fn environment_section(tool: &str) -> String {
    let prefix = crate::secret::env_name(tool, "");
    format!(
        ".SH ENVIRONMENT\nEvery long option can also be set from the environment as \\fB{prefix}\\fIOPTION\\fR \
         (upper case, dashes as underscores), as listed with each option; the command line wins.\n\
         Secrets are read from the file named by their \\fB\\-\\-\\fIX\\fB\\-file\\fR option or from the \
         variable \\fB{prefix}\\fIX\\fR, never from the command line.\n\
         .TP\n\\fBOPSLINE_LOG\\fR\nA tracing filter for standard error (e.g. \\fBdebug\\fR), overriding \\fB\\-v\\fR and \\fB\\-q\\fR.\n"
    )
}

fn exit_section() -> String {
    let mut text = String::from(".SH EXIT STATUS\n");
    for (code, meaning) in Code::TABLE {
        let _ = write!(text, ".TP\n\\fB{}\\fR\n{}\n", code.as_i32(), escape(meaning));
    }
    text.push_str(".TP\n\\fB130\\fR\ninterrupted by SIGINT (state is saved first)\n");
    text
}

fn examples_section(examples: &[Example]) -> String {
    if examples.is_empty() {
        return String::new();
    }
    let mut text = String::from(".SH EXAMPLES\n");
    for example in examples {
        let _ = write!(
            text,
            ".PP\n{}\n.PP\n.RS 4\n.nf\n{}\n.fi\n.RE\n",
            escape(example.title),
            escape(example.command)
        );
    }
    text
}

/// Protects text from being read as roff requests or escapes.
fn escape(text: &str) -> String {
    let text = text.replace('\\', "\\e").replace('-', "\\-");
    text.lines()
        .map(
            |line| {
                if line.starts_with(['.', '\'']) { format!("\\&{line}") } else { line.to_owned() }
            },
        )
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_have_exit_status_examples_and_subcommands() {
        let command = Command::new("demo-tool")
            .about("Does a demo")
            .subcommand(Command::new("run").about("Runs"));
        let pages = pages(command, &[Example { title: "Run it.", command: "demo-tool run --x" }]);
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["demo-tool.1", "demo-tool-run.1"]);
        let main = &pages[0].1;
        for needle in [
            ".SH EXIT STATUS",
            "\\fB75\\fR",
            ".SH EXAMPLES",
            "demo\\-tool run \\-\\-x",
            "DEMO_TOOL_",
        ] {
            assert!(main.contains(needle), "missing {needle}");
        }
    }
}
