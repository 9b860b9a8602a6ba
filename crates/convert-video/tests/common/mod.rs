//! Test videos made with ffmpeg's lavfi sources, the tool run as a program, and ffprobe checks.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

/// Encoder arguments for each kind of test video.
pub const H264_AAC_MP4: &[&str] =
    &["-c:v", "libx264", "-preset", "ultrafast", "-pix_fmt", "yuv420p", "-c:a", "aac", "-f", "mp4"];
pub const MPEG2_MPG: &[&str] = &["-c:v", "mpeg2video", "-c:a", "mp2", "-f", "mpeg"];
pub const WMV: &[&str] = &["-c:v", "wmv2", "-c:a", "wmav2", "-f", "asf"];
pub const MOV_PCM: &[&str] = &[
    "-c:v",
    "libx264",
    "-preset",
    "ultrafast",
    "-pix_fmt",
    "yuv420p",
    "-c:a",
    "pcm_s16le",
    "-f",
    "mov",
];

/// A test video of `seconds` at 25 fps with a sine tone (unless `audio` is false).
pub fn make_video(path: &Path, seconds: f64, size: &str, audio: bool, codec_args: &[&str]) {
    let mut command = Command::new("ffmpeg");
    command.args(["-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i"]);
    command.arg(format!("testsrc2=size={size}:rate=25:duration={seconds}"));
    if audio {
        command.args(["-f", "lavfi", "-i"]);
        command.arg(format!("sine=frequency=440:sample_rate=44100:duration={seconds}"));
    } else {
        command.arg("-an");
    }
    command.args(codec_args).arg("-shortest").arg(path);
    let status = command.status().expect("ffmpeg runs");
    assert!(status.success(), "making {}", path.display());
}

/// A 1 s 160x120 H.264/AAC MP4.
pub fn small_mp4(path: &Path) {
    make_video(path, 1.0, "160x120", true, H264_AAC_MP4);
}

/// ffprobe's view of a file (format, streams with packet counts).
pub fn ffprobe(path: &Path) -> Value {
    ffprobe_with(path, &[])
}

/// ffprobe's view of a file, with input options.
fn ffprobe_with(path: &Path, input_options: &[&str]) -> Value {
    let output = Command::new("ffprobe")
        .args(["-v", "error", "-show_format", "-show_streams", "-count_packets", "-of", "json"])
        .args(input_options)
        .arg("-i")
        .arg(file_protocol(path))
        .output()
        .expect("ffprobe runs");
    assert!(
        output.status.success(),
        "ffprobe {}: {}",
        path.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("ffprobe prints JSON")
}

/// `file:PATH`, so that ffprobe takes no name for a protocol or an image sequence pattern.
pub fn file_protocol(path: &Path) -> std::ffi::OsString {
    let mut arg = std::ffi::OsString::from("file:");
    arg.push(std::path::absolute(path).unwrap());
    arg
}

/// The codec names of a probe's streams, video first.
pub fn codecs(probe: &Value) -> Vec<String> {
    let mut streams: Vec<(String, String)> = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap().to_owned(),
                s["codec_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    streams.sort_by_key(|(kind, _)| kind != "video");
    streams.into_iter().map(|(_, codec)| codec).collect()
}

/// Video packets (frames) actually in the file.
pub fn video_frames(probe: &Value) -> u64 {
    let video = probe["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["codec_type"] == "video")
        .expect("a video stream");
    video["nb_read_packets"].as_str().unwrap().parse().unwrap()
}

/// The container's name list.
pub fn format_name(probe: &Value) -> String {
    probe["format"]["format_name"].as_str().unwrap().to_owned()
}

/// `(width, height, codec)` of an image (its name is not a `%d` pattern).
pub fn image_size(path: &Path) -> (u64, u64, String) {
    let probe = ffprobe_with(path, &["-f", "image2", "-pattern_type", "none"]);
    let stream = &probe["streams"][0];
    (
        stream["width"].as_u64().unwrap(),
        stream["height"].as_u64().unwrap(),
        stream["codec_name"].as_str().unwrap().to_owned(),
    )
}

/// The names in a folder.
pub fn listing(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// One run of the tool.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub records: Vec<Value>,
    pub stderr: String,
}

impl Run {
    /// The record whose `video.source` or `path` ends with `name`.
    pub fn record(&self, name: &str) -> &Value {
        self.records
            .iter()
            .find(|r| {
                let source = r["video"]["source"].as_str().or(r["path"].as_str()).unwrap_or("");
                source.ends_with(name)
            })
            .unwrap_or_else(|| panic!("no record for {name}: {:#?}", self.records))
    }
}

/// The tool's command, run in `dir` with a clean environment for its options.
pub fn tool(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_convert-video"));
    command.current_dir(dir);
    command
}

/// Runs the tool with `args`, feeding `stdin` (records or paths).
pub fn run(dir: &Path, args: &[&str], stdin: &str) -> Run {
    let mut command = tool(dir);
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("the tool starts");
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    finish(child.wait_with_output().unwrap())
}

/// The run's records and status.
pub fn finish(output: Output) -> Run {
    let stdout = String::from_utf8(output.stdout).expect("records are UTF-8");
    let records = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    Run {
        code: output.status.code().unwrap_or(-1),
        records,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// A temporary folder.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// `dir/name`.
pub fn file(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}
