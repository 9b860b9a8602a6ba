//! What a file holds, according to `ffprobe`: its container, its first video and audio streams,
//! and whether all the frames its index promises are really there.

use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::process::Command;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::child::{self, Ending, Limits};

/// A file as ffprobe sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    /// The container's names, e.g. `["mov", "mp4", "m4a", "3gp", "3g2", "mj2"]`.
    pub format_names: Vec<String>,
    /// Seconds, when known.
    pub duration: Option<f64>,
    /// Bytes.
    pub size: Option<u64>,
    /// Bits per second of the whole file.
    pub bit_rate: Option<u64>,
    /// The first video stream that is not cover art.
    pub video: Option<Stream>,
    /// The first audio stream.
    pub audio: Option<Stream>,
    /// The container's `comment` tag, where this tool names the source of its outputs.
    pub comment: Option<String>,
}

/// One stream of a file.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    /// Its index in the file, for `-map 0:N`.
    pub index: u32,
    /// ffmpeg's codec name (`h264`, `aac`, `pcm_s16le`).
    pub codec: String,
    /// Pixel format of a video stream (`yuv420p`).
    pub pix_fmt: Option<String>,
    /// Frame size of a video stream.
    pub width: Option<u32>,
    /// Frame size of a video stream.
    pub height: Option<u32>,
    /// Frames per second of a video stream.
    pub frame_rate: Option<f64>,
    /// Samples per second of an audio stream.
    pub sample_rate: Option<u32>,
    /// Channels of an audio stream.
    pub channels: Option<u32>,
    /// Frames the container's index promises, when it has one.
    pub frames: Option<u64>,
    /// Packets actually found when reading the file through.
    pub packets_read: Option<u64>,
    /// Degrees a player turns a video stream (phones filming upright), 0 when none.
    pub rotation: i64,
}

impl Stream {
    /// True when the file ends before the frames its index promises: an upload cut short
    /// whose index (written first, "faststart") survived.
    fn is_truncated(&self) -> bool {
        matches!((self.frames, self.packets_read), (Some(f), Some(p)) if f > 0 && p < f)
    }
}

/// Why a file cannot be used, in words for the person who uploaded it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("the file is empty")]
    Empty,
    #[error("the file cannot be read: {0}")]
    Unreadable(String),
    #[error(
        "the MP4 file has no index (\"moov atom\"): the upload is incomplete or the file is damaged"
    )]
    NoIndex,
    #[error("not a video file that ffprobe can read ({0})")]
    NotVideo(String),
    #[error("the file is a still image ({0}), not a video")]
    Image(String),
    #[error("the file has no video stream")]
    NoVideoStream,
    #[error("the container format {0} is not allowed (see --allow)")]
    FormatNotAllowed(String),
    #[error("the {kind} codec {codec} is not allowed (see --allow)")]
    CodecNotAllowed { kind: &'static str, codec: String },
    #[error(
        "the file is truncated: only {read} of the {promised} video frames its index lists are there (an incomplete upload?)"
    )]
    Truncated { read: u64, promised: u64 },
    #[error("ffprobe took longer than --timeout")]
    TimedOut,
    #[error("stopped before the file was checked")]
    Stopped,
    #[error("ffprobe could not be run: {0}")]
    ProbeFailed(String),
}

/// The argument that names `path` to ffmpeg or ffprobe: the `file:` protocol with an absolute
/// path, so that no name (`-x.mp4`, `a:b.mp4`, `-`) is taken for an option, a protocol or a pipe.
pub fn file_arg(path: &Path) -> OsString {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut arg = OsString::from("file:");
    arg.push(absolute.as_os_str());
    arg
}

/// Probes `path`, reading it through to count its packets.
pub fn probe(ffprobe: &Path, path: &Path, limits: &Limits) -> Result<Probe, Problem> {
    let mut command = Command::new(ffprobe);
    command.args(["-hide_banner", "-v", "error", "-show_format", "-show_streams"]);
    command.args(["-count_packets", "-of", "json", "-i"]).arg(file_arg(path));
    let mut json = String::new();
    let finished = child::run(command, limits, &mut |line: &str| {
        json.push_str(line);
        json.push('\n');
    })
    .map_err(|e| Problem::ProbeFailed(e.to_string()))?;
    match finished.ending {
        Ending::TimedOut => return Err(Problem::TimedOut),
        Ending::Stopped => return Err(Problem::Stopped),
        Ending::Exited(_) if finished.succeeded() => {}
        Ending::Exited(_) => return Err(explain_failure(path, &finished.stderr_tail)),
    }
    parse(&json).ok_or_else(|| Problem::NotVideo("ffprobe found no container".to_owned()))
}

/// Turns ffprobe's complaints (its last stderr lines) into a reason a person understands.
fn explain_failure(path: &Path, stderr: &str) -> Problem {
    let mut head = [0u8; 12];
    let read = match File::open(path).and_then(|mut f| f.read(&mut head)) {
        Ok(n) => n,
        Err(e) => return Problem::Unreadable(e.to_string()),
    };
    if read == 0 {
        return Problem::Empty;
    }
    if stderr.contains("moov atom not found") && read >= 8 && &head[4..8] == b"ftyp" {
        return Problem::NoIndex;
    }
    let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("no reason given");
    let name = file_arg(path);
    let complaint = last
        .strip_prefix(&*name.to_string_lossy())
        .map_or(last, |rest| rest.trim_start_matches(':').trim());
    Problem::NotVideo(format!("ffprobe: {complaint}"))
}

/// Checks that the file is a complete video made of allowed formats.
pub fn validate(probe: &Probe, allow: &[String]) -> Result<(), Problem> {
    let allowed = |name: &str| allow.iter().any(|a| a.eq_ignore_ascii_case(name));
    let still = |name: &String| name == "image2" || name.ends_with("_pipe");
    if probe.format_names.iter().any(still) {
        return Err(Problem::Image(probe.format_names.join(",")));
    }
    if !probe.format_names.iter().any(|name| allowed(name)) {
        return Err(Problem::FormatNotAllowed(probe.format_names.join(",")));
    }
    let video = probe.video.as_ref().ok_or(Problem::NoVideoStream)?;
    if !allowed(&video.codec) {
        return Err(Problem::CodecNotAllowed { kind: "video", codec: video.codec.clone() });
    }
    if let Some(audio) = probe.audio.as_ref().filter(|a| !allowed(&a.codec)) {
        return Err(Problem::CodecNotAllowed { kind: "audio", codec: audio.codec.clone() });
    }
    if video.is_truncated() {
        return Err(Problem::Truncated {
            read: video.packets_read.unwrap_or(0),
            promised: video.frames.unwrap_or(0),
        });
    }
    Ok(())
}

/// The metadata a record carries: what a person or a web page wants to know about the file.
pub fn metadata(probe: &Probe) -> Value {
    let video = probe.video.as_ref();
    let audio = probe.audio.as_ref();
    json!({
        "container": probe.format_names.first(),
        "duration": probe.duration.map(|d| (d * 1000.0).round() / 1000.0),
        "size": probe.size,
        "bit_rate": probe.bit_rate,
        "width": video.and_then(|v| v.width),
        "height": video.and_then(|v| v.height),
        "frame_rate": video.and_then(|v| v.frame_rate).map(|r| (r * 1000.0).round() / 1000.0),
        "video_codec": video.map(|v| &v.codec),
        "audio_codec": audio.map(|a| &a.codec),
        "audio_channels": audio.and_then(|a| a.channels),
        "audio_sample_rate": audio.and_then(|a| a.sample_rate),
    })
}

#[derive(Debug, Deserialize)]
struct RawProbe {
    format: Option<RawFormat>,
    #[serde(default)]
    streams: Vec<RawStream>,
}

#[derive(Debug, Deserialize)]
struct RawFormat {
    format_name: String,
    duration: Option<String>,
    size: Option<String>,
    bit_rate: Option<String>,
    #[serde(default)]
    tags: serde_json::Map<String, Value>,
}

#[derive(Debug, Deserialize)]
struct RawStream {
    index: u32,
    codec_type: Option<String>,
    codec_name: Option<String>,
    pix_fmt: Option<String>,
    width: Option<u32>,
    height: Option<u32>,
    avg_frame_rate: Option<String>,
    r_frame_rate: Option<String>,
    sample_rate: Option<String>,
    channels: Option<u32>,
    nb_frames: Option<String>,
    nb_read_packets: Option<String>,
    #[serde(default)]
    disposition: Disposition,
    #[serde(default)]
    side_data_list: Vec<Value>,
    #[serde(default)]
    tags: serde_json::Map<String, Value>,
}

#[derive(Debug, Default, Deserialize)]
struct Disposition {
    #[serde(default)]
    attached_pic: u8,
}

/// Parses ffprobe's JSON (numbers arrive as strings); `None` when it names no container.
pub fn parse(json: &str) -> Option<Probe> {
    let raw: RawProbe = serde_json::from_str(json).ok()?;
    let format = raw.format?;
    let first = |kind: &str| {
        raw.streams
            .iter()
            .find(|s| {
                s.codec_type.as_deref() == Some(kind)
                    && s.codec_name.is_some()
                    && s.disposition.attached_pic == 0
            })
            .map(stream)
    };
    Some(Probe {
        format_names: format.format_name.split(',').map(str::to_owned).collect(),
        duration: number(format.duration.as_deref()).filter(|d: &f64| d.is_finite() && *d > 0.0),
        size: number(format.size.as_deref()),
        bit_rate: number(format.bit_rate.as_deref()),
        video: first("video"),
        audio: first("audio"),
        comment: format
            .tags
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case("comment"))
            .and_then(|(_, value)| value.as_str().map(str::to_owned)),
    })
}

fn stream(raw: &RawStream) -> Stream {
    Stream {
        index: raw.index,
        codec: raw.codec_name.clone().unwrap_or_default(),
        pix_fmt: raw.pix_fmt.clone(),
        width: raw.width,
        height: raw.height,
        frame_rate: rate(raw.avg_frame_rate.as_deref())
            .or_else(|| rate(raw.r_frame_rate.as_deref())),
        sample_rate: number(raw.sample_rate.as_deref()),
        channels: raw.channels,
        frames: number(raw.nb_frames.as_deref()),
        packets_read: number(raw.nb_read_packets.as_deref()),
        rotation: rotation(raw),
    }
}

/// The display matrix's rotation (ffmpeg 5 and later), else the older `rotate` tag.
fn rotation(raw: &RawStream) -> i64 {
    let matrix = raw.side_data_list.iter().find_map(|d| d.get("rotation")?.as_i64());
    let tag = || number(raw.tags.get("rotate").and_then(Value::as_str));
    matrix.or_else(tag).unwrap_or(0)
}

fn number<T: std::str::FromStr>(text: Option<&str>) -> Option<T> {
    text?.trim().parse().ok()
}

/// `"30000/1001"` as a number; `0/0` (unknown) as `None`.
fn rate(text: Option<&str>) -> Option<f64> {
    let (num, den) = text?.split_once('/')?;
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    (num > 0.0 && den > 0.0).then(|| num / den)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MP4: &str = r#"{"streams": [
        {"index": 0, "codec_name": "mjpeg", "codec_type": "video", "disposition": {"attached_pic": 1}},
        {"index": 1, "codec_name": "h264", "codec_type": "video", "pix_fmt": "yuv420p", "width": 160,
         "height": 120, "avg_frame_rate": "30000/1001", "r_frame_rate": "30/1", "nb_frames": "50",
         "nb_read_packets": "14", "side_data_list": [{"side_data_type": "Display Matrix", "rotation": -90}]},
        {"index": 2, "codec_name": "aac", "codec_type": "audio", "sample_rate": "44100", "channels": 2,
         "avg_frame_rate": "0/0"}],
      "format": {"format_name": "mov,mp4,m4a,3gp,3g2,mj2", "duration": "2.000000", "size": "86763",
        "bit_rate": "347052", "tags": {"COMMENT": "made here"}}}"#;

    #[test]
    fn strings_become_numbers_and_cover_art_is_skipped() {
        let probe = parse(MP4).unwrap();
        let video = probe.video.as_ref().unwrap();
        assert_eq!(video.index, 1);
        assert_eq!(video.rotation, -90);
        assert!((video.frame_rate.unwrap() - 29.97).abs() < 0.01);
        assert_eq!(probe.audio.as_ref().unwrap().sample_rate, Some(44100));
        assert_eq!(probe.size, Some(86763));
        assert_eq!(probe.comment.as_deref(), Some("made here"));
        let meta = metadata(&probe);
        assert_eq!(meta["container"], "mov");
        assert_eq!(meta["frame_rate"], 29.97);
        assert_eq!(meta["audio_channels"], 2);
    }

    #[test]
    fn fewer_packets_than_indexed_frames_is_truncation() {
        let allow = ["mp4".to_owned(), "h264".to_owned(), "aac".to_owned()];
        let probe = parse(MP4).unwrap();
        assert_eq!(validate(&probe, &allow), Err(Problem::Truncated { read: 14, promised: 50 }));
        assert!(parse("{\n\n}").is_none());
    }

    #[test]
    fn formats_and_codecs_must_be_allowed() {
        let mut probe = parse(MP4).unwrap();
        probe.video.as_mut().unwrap().packets_read = Some(50);
        let allow = |names: &[&str]| names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>();
        assert!(validate(&probe, &allow(&["mov", "h264", "aac"])).is_ok());
        assert!(matches!(
            validate(&probe, &allow(&["mov", "h264"])),
            Err(Problem::CodecNotAllowed { kind: "audio", .. })
        ));
        assert!(matches!(
            validate(&probe, &allow(&["avi", "h264", "aac"])),
            Err(Problem::FormatNotAllowed(_))
        ));
        probe.video = None;
        assert_eq!(validate(&probe, &allow(&["mov"])), Err(Problem::NoVideoStream));
        probe.format_names = vec!["png_pipe".to_owned()];
        assert!(matches!(validate(&probe, &allow(&["png_pipe"])), Err(Problem::Image(_))));
    }
}
