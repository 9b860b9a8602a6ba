//! The servers a site's workflows talk to, started on 127.0.0.1 under a temporary folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use opsline_testkit::http::{HttpServer, RecordedRequest, Reply};
use opsline_testkit::smtp::Smtp;
use opsline_testkit::sshd::{SshAccount, Sshd};
use opsline_testkit::tls::TestCa;
use serde_json::json;
use tempfile::TempDir;

use crate::bins;
use crate::shell::Shell;

/// Where Pushover messages go on the local API server.
pub const PUSHOVER_PATH: &str = "/1/messages.json";

/// Where the Mattermost incoming webhook lives on the local API server (its secret part).
pub const MATTERMOST_PATH: &str = "/hooks/3xj9ktq8mfbq7nfocd5wz1y6ah";

/// How long a pipeline may run before it counts as hung.
pub const RUN_TIMEOUT: Duration = Duration::from_secs(120);

/// The servers, a work folder and a shell with the tools on `PATH`. Everything is stopped
/// (by process id) and removed on drop.
#[derive(Debug)]
pub struct Lab {
    /// Runs the pipelines.
    pub shell: Shell,
    /// OpenSSH with the SFTP accounts: uploads come in, backups and logs are shipped to it.
    pub sshd: Sshd,
    /// The mail server.
    pub smtp: Smtp,
    /// HTTPS, serving the database server's dump zip.
    pub https: HttpServer,
    /// Plain HTTP standing in for the Pushover API and the Mattermost webhook.
    pub api: HttpServer,
    /// The CA that issued the HTTPS server's certificate.
    pub ca: TestCa,
    work: TempDir,
}

impl Lab {
    /// Locates the tools and starts every server.
    pub fn start() -> anyhow::Result<Self> {
        let bin_dir = bins::locate()?;
        let work = tempfile::Builder::new().prefix("opsline-lab-").tempdir()?;
        let shell = Shell::new(&bin_dir, work.path())?;
        let sshd = Sshd::start().context("starting sshd")?;
        let smtp = Smtp::start().context("starting the SMTP server")?;
        let ca = TestCa::new()?;
        let https = HttpServer::start_tls(&ca).context("starting the HTTPS server")?;
        https.set_default(Reply::status(404));
        let api = HttpServer::start().context("starting the HTTP API server")?;
        api.set_handler(answer_api);
        Ok(Self { shell, sshd, smtp, https, api, ca, work })
    }

    /// The work folder (sample data, state, outputs).
    pub fn work(&self) -> &Path {
        self.work.path()
    }

    /// A folder under the work folder, created if missing.
    pub fn dir(&self, rel: &str) -> anyhow::Result<PathBuf> {
        let path = self.work.path().join(rel);
        fs::create_dir_all(&path).with_context(|| format!("creating {}", path.display()))?;
        Ok(path)
    }

    /// Writes a secret file (mode 0600) under `work/secrets`.
    pub fn secret(&self, name: &str, value: &str) -> anyhow::Result<PathBuf> {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir("secrets")?.join(name);
        fs::write(&path, format!("{value}\n"))?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600))?;
        Ok(path)
    }

    /// `smtp://127.0.0.1:PORT`.
    pub fn smtp_url(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.smtp.port())
    }

    /// A `known_hosts` file vouching for the SSH server, under the work folder.
    pub fn known_hosts(&self) -> anyhow::Result<PathBuf> {
        let path = self.work.path().join("known_hosts");
        self.sshd.write_known_hosts(&path)?;
        Ok(path)
    }

    /// `sftp://ACCOUNT@127.0.0.1:PORT/ABSOLUTE_DIR` for a folder below the account's landing
    /// folder.
    pub fn sftp_url(&self, account: SshAccount, sub: &str) -> String {
        format!(
            "sftp://{}@127.0.0.1:{}{}/{sub}",
            account.name(),
            self.sshd.port(),
            self.sshd.remote_dir(account)
        )
    }

    /// The requests the API server got on `path`.
    pub fn api_requests(&self, path: &str) -> Vec<RecordedRequest> {
        self.api.requests().into_iter().filter(|r| r.path() == path).collect()
    }
}

/// Pushover's answer to a message and Mattermost's to a post; anything else is not found.
fn answer_api(request: &RecordedRequest) -> Reply {
    match request.path() {
        PUSHOVER_PATH => Reply::json(
            200,
            &json!({"status": 1, "request": "5042853c-402d-4a18-abcb-168734a801de"}),
        ),
        MATTERMOST_PATH => Reply::text(200, "ok"),
        _ => Reply::status(404),
    }
}
