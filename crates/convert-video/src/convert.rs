//! One file, start to end: name the outputs, skip them when they are up to date, validate the
//! source, run ffmpeg into temporary names, check the result, and only then give the files
//! their final names. A failure leaves nothing behind; the source is never touched.

use std::ffi::OsStr;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use nix::fcntl::{AT_FDCWD, RenameFlags, renameat2};
use opsline::Shutdown;
use serde_json::Value;

use crate::child::{self, Ending, Limits};
use crate::plan::{
    Encoding, ImageFormat, Plan, Target, Thumbnail, ffmpeg_args, source_tag, thumbnail_time,
};
use crate::probe::{self, Probe, Problem};
use crate::progress::Bar;

/// Everything a conversion needs besides the file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The ffmpeg program.
    pub ffmpeg: PathBuf,
    /// The ffprobe program.
    pub ffprobe: PathBuf,
    /// The container to convert to.
    pub target: Target,
    /// Where outputs go; beside the source when `None`.
    pub out_dir: Option<PathBuf>,
    /// Container and codec names a source may use.
    pub allow: Vec<String>,
    /// Encoder settings.
    pub encoding: Encoding,
    /// Replace outputs that exist but are not up to date.
    pub overwrite: bool,
    /// Also write the metadata beside the output as `NAME.json`.
    pub metadata_json: bool,
    /// Where the thumbnail is taken.
    pub thumbnail_at: At,
    /// Thumbnail width in pixels.
    pub thumbnail_width: u32,
    /// Thumbnail image format.
    pub thumbnail_format: ImageFormat,
    /// Wall-clock limit per file.
    pub timeout: Option<Duration>,
    /// Time between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// A point in a video.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum At {
    /// A share of the duration, 0–100.
    Percent(f64),
    /// Seconds from the start.
    Seconds(f64),
}

impl std::str::FromStr for At {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad =
            || format!("\"{text}\" is neither seconds (12.5) nor a share of the duration (10%)");
        let (number, percent) = match text.trim().strip_suffix('%') {
            Some(number) => (number, true),
            None => (text.trim().trim_end_matches('s'), false),
        };
        let value: f64 = number.trim().parse().map_err(|_| bad())?;
        match (percent, value) {
            (_, v) if !v.is_finite() || v < 0.0 => Err(bad()),
            (true, v) if v > 100.0 => Err(bad()),
            (true, v) => Ok(At::Percent(v)),
            (false, v) => Ok(At::Seconds(v)),
        }
    }
}

impl At {
    fn seconds(self, duration: Option<f64>) -> f64 {
        match self {
            At::Seconds(s) => s,
            At::Percent(p) => duration.unwrap_or(0.0) * p / 100.0,
        }
    }
}

/// The files a conversion produces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outputs {
    /// The converted video.
    pub video: PathBuf,
    /// The thumbnail image.
    pub thumbnail: PathBuf,
    /// The metadata sidecar, with `--metadata-json`.
    pub sidecar: Option<PathBuf>,
}

impl Outputs {
    /// The names for `source`: its stem with the new extensions, in `--out-dir` or beside it.
    pub fn for_source(source: &Path, settings: &Settings) -> Result<Outputs, String> {
        let stem = source.file_stem().ok_or("the path does not name a file")?;
        let dir = match &settings.out_dir {
            Some(dir) => dir.clone(),
            None => source.parent().map(Path::to_path_buf).unwrap_or_default(),
        };
        let named = |extension: &str| {
            let mut name = stem.to_os_string();
            name.push(".");
            name.push(extension);
            dir.join(name)
        };
        Ok(Outputs {
            video: named(settings.target.extension()),
            thumbnail: named(settings.thumbnail_format.extension()),
            sidecar: settings.metadata_json.then(|| named("json")),
        })
    }

    fn all(&self) -> impl Iterator<Item = &PathBuf> {
        [&self.video, &self.thumbnail].into_iter().chain(self.sidecar.as_ref())
    }
}

/// A finished conversion (or a skipped one).
#[derive(Debug, Clone, PartialEq)]
pub struct Done {
    /// The files.
    pub outputs: Outputs,
    /// True when no stream was encoded; `None` when the output was already there.
    pub remuxed: Option<bool>,
    /// The output's metadata.
    pub metadata: Value,
    /// True when an up-to-date output existed and nothing was done.
    pub skipped: bool,
}

/// Converts one file.
pub fn convert(
    source: &Path,
    settings: &Settings,
    shutdown: &Shutdown,
    bar: &Bar,
) -> Result<Done, String> {
    let limits = Limits {
        deadline: settings.timeout.map(|t| Instant::now() + t),
        grace: settings.grace,
        shutdown: shutdown.clone(),
    };
    let outputs = Outputs::for_source(source, settings)?;
    let source_time = modified(source).map_err(|e| source_error(&e))?;
    if same_file(source, &outputs.video) {
        return Err("the output would replace the source: choose another --out-dir or --to".into());
    }
    if let Some(done) = up_to_date(source, source_time, &outputs, settings, &limits)? {
        return Ok(done);
    }
    let probe = probe::probe(&settings.ffprobe, source, &limits).map_err(|p| p.to_string())?;
    probe::validate(&probe, &settings.allow).map_err(|p| p.to_string())?;
    let plan = Plan::choose(&probe, settings.target, &settings.encoding)
        .ok_or_else(|| Problem::NoVideoStream.to_string())?;
    bar.start(source, probe.duration);
    let temps = Temps::for_outputs(&outputs)?;
    transcode(source, &probe, &plan, settings, &temps, &limits, bar)?;
    let produced = probe::probe(&settings.ffprobe, &temps.video, &limits)
        .map_err(|p| format!("the converted file failed its check: {p}"))?;
    verify(&probe, &produced, &plan, &temps.thumbnail)?;
    let metadata = probe::metadata(&produced);
    if let Some(sidecar) = &temps.sidecar {
        write_sidecar(sidecar, &metadata)?;
    }
    temps.commit(&outputs, settings.overwrite)?;
    Ok(Done { outputs, remuxed: Some(plan.is_remux()), metadata, skipped: false })
}

fn source_error(error: &io::Error) -> String {
    match error.kind() {
        io::ErrorKind::NotFound => "the file does not exist (any more)".to_owned(),
        _ => format!("the file cannot be read: {error}"),
    }
}

fn modified(path: &Path) -> io::Result<std::time::SystemTime> {
    fs::metadata(path)?.modified()
}

fn same_file(a: &Path, b: &Path) -> bool {
    let absolute = |p: &Path| std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf());
    absolute(a) == absolute(b)
}

/// The existing outputs when they are newer than the source, made from it and still
/// readable; an error when other files stand where the outputs go and `--overwrite` was not
/// given.
fn up_to_date(
    source: &Path,
    source_time: std::time::SystemTime,
    outputs: &Outputs,
    settings: &Settings,
    limits: &Limits,
) -> Result<Option<Done>, String> {
    let fresh = |path: &Path| modified(path).is_ok_and(|t| t >= source_time);
    if fresh(&outputs.video)
        && fresh(&outputs.thumbnail)
        && let Ok(existing) = probe::probe(&settings.ffprobe, &outputs.video, limits)
        && existing.comment.as_deref().map(OsStr::new) == Some(&*source_tag(source, ""))
    {
        let metadata = probe::metadata(&existing);
        if let Some(sidecar) = outputs.sidecar.as_ref().filter(|s| s.symlink_metadata().is_err()) {
            add_sidecar(sidecar, &metadata)?;
        }
        return Ok(Some(Done { outputs: outputs.clone(), remuxed: None, metadata, skipped: true }));
    }
    if settings.overwrite {
        return Ok(None);
    }
    match outputs.all().find(|path| path.symlink_metadata().is_ok()) {
        Some(path) => Err(format!(
            "{} already exists and is not an up-to-date conversion of this file; pass --overwrite to replace it",
            path.display()
        )),
        None => Ok(None),
    }
}

/// Runs ffmpeg; on any failure its partial files go with [`Temps`].
fn transcode(
    source: &Path,
    probe: &Probe,
    plan: &Plan,
    settings: &Settings,
    temps: &Temps,
    limits: &Limits,
    bar: &Bar,
) -> Result<(), String> {
    let at = thumbnail_time(settings.thumbnail_at.seconds(probe.duration), probe);
    let thumbnail =
        Thumbnail { at, width: settings.thumbnail_width, format: settings.thumbnail_format };
    let args =
        ffmpeg_args(plan, &settings.encoding, &thumbnail, source, &temps.video, &temps.thumbnail);
    let mut command = Command::new(&settings.ffmpeg);
    command.args(&args);
    tracing::debug!(?args, "running ffmpeg");
    let finished = child::run(command, limits, &mut |line: &str| {
        if let Some(micros) = line.strip_prefix("out_time_us=").and_then(|v| v.parse().ok()) {
            bar.advance(micros);
        }
    })
    .map_err(|e| format!("ffmpeg could not be run: {e}"))?;
    match finished.ending {
        Ending::Exited(_) if finished.succeeded() => Ok(()),
        Ending::Exited(_) => Err(format!("ffmpeg failed: {}", finished.last_complaint())),
        Ending::TimedOut => Err(format!(
            "the conversion took longer than --timeout ({:.1} s) and was stopped",
            settings.timeout.unwrap_or_default().as_secs_f64()
        )),
        Ending::Stopped => Err("the conversion was stopped: the tool was asked to stop".to_owned()),
    }
}

/// ffmpeg can exit 0 with a short or empty result: the output must hold the planned codecs
/// for (nearly) the source's whole duration, and the thumbnail must exist.
fn verify(source: &Probe, produced: &Probe, plan: &Plan, thumbnail: &Path) -> Result<(), String> {
    let fail = |why: String| Err(format!("the converted file failed its check: {why}"));
    let (video, audio) = plan.expected_codecs();
    let got_video = produced.video.as_ref().map(|s| s.codec.as_str());
    if got_video != Some(video.as_str()) {
        return fail(format!("expected {video} video, found {}", got_video.unwrap_or("none")));
    }
    let got_audio = produced.audio.as_ref().map(|s| s.codec.clone());
    if got_audio != audio {
        return fail(format!("expected {audio:?} audio, found {got_audio:?}"));
    }
    if let (Some(want), Some(got)) = (source.duration, produced.duration)
        && got < want - duration_slack(want)
    {
        return fail(format!("it lasts {got:.2} s, the source {want:.2} s"));
    }
    match fs::metadata(thumbnail) {
        Ok(meta) if meta.len() > 0 => Ok(()),
        _ => fail("no thumbnail was written".to_owned()),
    }
}

/// How much shorter than the source a good output may be: containers round and trim the
/// last audio frame or video frame differently.
fn duration_slack(duration: f64) -> f64 {
    0.25 + duration * 0.02
}

fn write_sidecar(path: &Path, metadata: &Value) -> Result<(), String> {
    let mut text = serde_json::to_vec_pretty(metadata).expect("metadata serialises");
    text.push(b'\n');
    fs::write(path, &text).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Writes a missing sidecar beside an existing output, through a private folder like a
/// conversion's files.
fn add_sidecar(path: &Path, metadata: &Value) -> Result<(), String> {
    let dir = private_dir(path)?;
    let temp = dir.path().join(path.file_name().unwrap_or_default());
    write_sidecar(&temp, metadata)?;
    place(&temp, path, false)
}

/// A new hidden folder (mode 0700) beside `path`, removed on drop.
fn private_dir(path: &Path) -> Result<tempfile::TempDir, String> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    tempfile::Builder::new()
        .prefix(".convert-video-")
        .tempdir_in(parent)
        .map_err(|e| format!("cannot create a temporary folder in {}: {e}", parent.display()))
}

/// The files ffmpeg writes, in a private hidden folder (mode 0700) beside the outputs: nobody
/// else can plant a symbolic link at a name ffmpeg is about to open, and a half-written file
/// never has a final name. The folder and whatever is left in it go on drop.
#[derive(Debug)]
struct Temps {
    /// Held for its drop, which removes the folder.
    _dir: tempfile::TempDir,
    video: PathBuf,
    thumbnail: PathBuf,
    sidecar: Option<PathBuf>,
}

impl Temps {
    fn for_outputs(outputs: &Outputs) -> Result<Temps, String> {
        let parent = match outputs.video.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let dir =
            tempfile::Builder::new().prefix(".convert-video-").tempdir_in(parent).map_err(|e| {
                format!("cannot create a temporary folder in {}: {e}", parent.display())
            })?;
        let inside = |path: &Path| dir.path().join(path.file_name().unwrap_or_default());
        Ok(Temps {
            video: inside(&outputs.video),
            thumbnail: inside(&outputs.thumbnail),
            sidecar: outputs.sidecar.as_deref().map(inside),
            _dir: dir,
        })
    }

    /// Gives the files their final names, the video last: once it exists, so do the others.
    /// When one cannot be placed, the ones already placed (new files, without `overwrite`)
    /// are removed again.
    fn commit(self, outputs: &Outputs, overwrite: bool) -> Result<(), String> {
        let mut moves = Vec::new();
        if let (Some(temp), Some(last)) = (&self.sidecar, &outputs.sidecar) {
            moves.push((temp, last));
        }
        moves.push((&self.thumbnail, &outputs.thumbnail));
        moves.push((&self.video, &outputs.video));
        let mut placed = Vec::new();
        for (temp, last) in moves {
            if let Err(e) = place(temp, last, overwrite) {
                if !overwrite {
                    placed.iter().for_each(|p| drop(fs::remove_file(p)));
                }
                return Err(e);
            }
            placed.push(last);
        }
        Ok(())
    }
}

/// Renames `temp` to `last`; without `overwrite` an existing `last` (made meanwhile by
/// someone else) is kept and the rename fails.
fn place(temp: &Path, last: &Path, overwrite: bool) -> Result<(), String> {
    let flags = if overwrite { RenameFlags::empty() } else { RenameFlags::RENAME_NOREPLACE };
    renameat2(AT_FDCWD, temp, AT_FDCWD, last, flags).map_err(|e| match e {
        nix::errno::Errno::EEXIST => {
            format!("{} appeared while converting; pass --overwrite to replace it", last.display())
        }
        e => format!("cannot rename {} to {}: {e}", temp.display(), last.display()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thumbnail_time_is_seconds_or_a_share() {
        assert_eq!("10%".parse::<At>(), Ok(At::Percent(10.0)));
        assert_eq!("2.5".parse::<At>(), Ok(At::Seconds(2.5)));
        assert_eq!("3s".parse::<At>(), Ok(At::Seconds(3.0)));
        assert!("150%".parse::<At>().is_err());
        assert!("-1".parse::<At>().is_err());
        assert!("soon".parse::<At>().is_err());
        assert_eq!(At::Percent(10.0).seconds(Some(30.0)), 3.0);
    }

    const FLV: &str = r#"{"streams": [
        {"index": 0, "codec_name": "h264", "codec_type": "video", "pix_fmt": "yuv420p"},
        {"index": 1, "codec_name": "aac", "codec_type": "audio"}],
      "format": {"format_name": "flv", "duration": "10.0"}}"#;

    #[test]
    fn a_short_or_wrong_result_fails_the_check() {
        let dir = tempfile::tempdir().unwrap();
        let thumbnail = dir.path().join("t.png");
        fs::write(&thumbnail, b"png").unwrap();
        let source = probe::parse(FLV).unwrap();
        let plan = Plan::choose(&source, Target::Flv, &encoding()).unwrap();
        assert_eq!(verify(&source, &source, &plan, &thumbnail), Ok(()));
        let mut short = source.clone();
        short.duration = Some(6.0);
        let err = verify(&source, &short, &plan, &thumbnail).unwrap_err();
        assert!(err.contains("lasts 6.00 s"), "{err}");
        let mut silent = source.clone();
        silent.audio = None;
        assert!(verify(&source, &silent, &plan, &thumbnail).unwrap_err().contains("audio"));
        let missing = dir.path().join("none.png");
        assert!(verify(&source, &source, &plan, &missing).unwrap_err().contains("thumbnail"));
    }

    fn encoding() -> Encoding {
        Encoding { force: false, crf: None, preset: "medium".to_owned(), max_height: None }
    }
}
