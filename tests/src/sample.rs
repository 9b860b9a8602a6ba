//! Sample data the workflows run on, generated on the spot: a video, a dump in a zip, an
//! auth.log with rotations and a FlexLM debug log.

use std::fs;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{Context as _, bail};
use chrono::{Duration, Local, NaiveDate};

/// A 2-second 320x240 H.264/AAC MP4 made by ffmpeg's test sources.
pub fn video(path: &Path) -> anyhow::Result<()> {
    let status = Command::new("ffmpeg")
        .args([
            "-nostdin",
            "-v",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x240:rate=25:duration=2",
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:duration=2"])
        .args(["-c:v", "libx264", "-pix_fmt", "yuv420p", "-c:a", "aac", "-shortest"])
        .arg(path)
        .status()
        .context("running ffmpeg (apt-get install ffmpeg)")?;
    if !status.success() {
        bail!("ffmpeg could not make the sample video: {status}");
    }
    Ok(())
}

/// A zip holding `member`, an SQL dump of about `lines` lines, modified `days_old` days ago
/// (0: now; more: the database server's export job did not run since).
pub fn dump_zip(zip: &Path, member: &str, lines: usize, days_old: u64) -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let dump = dir.path().join(member);
    let mut out = std::io::BufWriter::new(fs::File::create(&dump)?);
    writeln!(out, "-- dump of inforx, {}", Local::now().format("%Y-%m-%d %H:%M"))?;
    for i in 0..lines {
        writeln!(
            out,
            "INSERT INTO visits (id, host, seen) VALUES ({i}, 'pc{:03}', '2026-11-23 07:{:02}:00');",
            i % 500,
            i % 60
        )?;
    }
    out.flush()?;
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.set_modified(
        std::time::SystemTime::now() - std::time::Duration::from_secs(days_old * 86_400),
    )?;
    drop(file);
    let status = Command::new("zip")
        .args(["-q", "-j"])
        .arg(zip)
        .arg(&dump)
        .status()
        .context("running zip (apt-get install zip)")?;
    if !status.success() {
        bail!("zip failed: {status}");
    }
    Ok(())
}

/// Classic syslog lines of an SSH server, numbered from `first` (ports and pids follow the
/// number, so every line is unique): logins and failed passwords the alarm must report, and
/// routine noise (CRON, closed connections) it must drop.
pub fn auth_lines(host: &str, first: usize, count: usize) -> Vec<String> {
    let day = Local::now().format("%b %e");
    (first..first + count)
        .map(|i| {
            let stamp = format!("{day} {:02}:{:02}:{:02}", 6 + i / 60, i % 60, i % 60);
            match i % 4 {
                0 => format!("{stamp} {host} sshd[{}]: Accepted publickey for ann from 192.0.2.{} port {} ssh2: ED25519 SHA256:abc", 1000 + i, 10 + i % 200, 50000 + i),
                1 => format!("{stamp} {host} CRON[{}]: pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)", 2000 + i),
                2 => format!("{stamp} {host} sshd[{}]: Failed password for invalid user admin from 203.0.113.{} port {} ssh2", 3000 + i, 5 + i % 200, 40000 + i),
                _ => format!("{stamp} {host} sshd[{}]: Connection closed by 198.51.100.{} port {} [preauth]", 4000 + i, 1 + i % 200, 30000 + i),
            }
        })
        .collect()
}

/// A copy of the first `bytes` bytes of `source`: an upload cut off midway.
pub fn truncated_copy(source: &Path, target: &Path, bytes: usize) -> anyhow::Result<()> {
    let data = fs::read(source)?;
    fs::write(target, &data[..bytes.min(data.len())])?;
    Ok(())
}

/// Appends lines to a log.
pub fn append_lines(path: &Path, lines: &[String]) -> anyhow::Result<()> {
    let mut file = fs::OpenOptions::new().create(true).append(true).open(path)?;
    for line in lines {
        writeln!(file, "{line}")?;
    }
    Ok(())
}

/// Rotates a log the way logrotate does by default: rename to `.1`, start a new empty file.
pub fn rotate(path: &Path) -> anyhow::Result<()> {
    let mut rotated = path.as_os_str().to_owned();
    rotated.push(".1");
    fs::rename(path, &rotated)?;
    fs::File::create(path)?;
    Ok(())
}

/// A FlexLM debug log of OriginLab's license server over two days: a start banner, check-outs
/// and check-ins of several users (one with a space in the name), a denial, a midnight
/// roll-over without a TIMESTAMP line, and users still connected at the end.
pub fn license_log(path: &Path, first_day: NaiveDate) -> anyhow::Result<()> {
    fs::write(path, license_log_text(first_day))?;
    Ok(())
}

/// The text of [`license_log`].
pub fn license_log_text(first_day: NaiveDate) -> String {
    let second_day = first_day + Duration::days(1);
    let date = |d: NaiveDate| d.format("%-m/%-d/%Y").to_string();
    format!(
        " 8:00:01 (lmgrd) -----------------------------------------------
 8:00:01 (lmgrd)   FlexNet Licensing (v11.16.2.0 build 242433 x64_lsb) started on licsrv (IBM PC) ({d1})
 8:00:01 (lmgrd) orglab using TCP-port 27001
 8:00:02 (lmgrd) Started orglab (pid 4242)
 8:00:02 (orglab) FlexNet Licensing version v11.16.2.0 build 242433 x64_lsb
 8:00:02 (orglab) Server started on licsrv for:	Origin	OriginPro
 8:15:10 (orglab) OUT: \"OriginPro\" ann@pc-ann  
 9:03:12 (orglab) OUT: \"OriginPro\" bob@pc-bob  
 9:30:00 (orglab) OUT: \"Origin\" Jean Dupré@pc-lab3  
10:15:10 (orglab) IN: \"OriginPro\" ann@pc-ann  
11:00:00 (orglab) DENIED: \"OriginPro\" carol@pc-carol  (Licensed number of users already reached. (-4,342))
12:00:00 (orglab) IN: \"OriginPro\" bob@pc-bob  
14:00:01 (lmgrd) TIMESTAMP {d1}
14:30:00 (orglab) OUT: \"OriginPro\" carol@pc-carol  
17:45:00 (orglab) IN: \"Origin\" Jean Dupré@pc-lab3  
23:50:00 (orglab) OUT: \"OriginPro\" ann@pc-ann  
 0:40:00 (orglab) IN: \"OriginPro\" ann@pc-ann  
 8:10:00 (orglab) OUT: \"OriginPro\" bob@pc-bob  
 9:00:00 (orglab) IN: \"OriginPro\" carol@pc-carol  (INACTIVE)
 9:20:00 (orglab) OUT: \"Origin\" Jean Dupré@pc-lab3  
14:00:01 (lmgrd) TIMESTAMP {d2}
",
        d1 = date(first_day),
        d2 = date(second_day),
    )
}
