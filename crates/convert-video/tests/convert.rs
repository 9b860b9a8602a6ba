//! convert-video against the real ffmpeg and ffprobe, on videos made by ffmpeg's lavfi sources.

mod common;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::*;
use serde_json::{Value, json};

/// One frame at the 25 fps of the test videos.
const FRAME: f64 = 0.04;

fn duration(probe: &Value) -> f64 {
    probe["format"]["duration"].as_str().unwrap().parse().unwrap()
}

/// The output holds the source's frames (within one) and lasts as long (within a frame plus
/// the audio encoder's padding).
fn assert_same_length(source: &Path, output: &Path) {
    let (src, out) = (ffprobe(source), ffprobe(output));
    let (a, b) = (video_frames(&src), video_frames(&out));
    assert!(
        a.abs_diff(b) <= 1,
        "{} has {b} frames, {} has {a}",
        output.display(),
        source.display()
    );
    let (a, b) = (duration(&src), duration(&out));
    assert!((a - b).abs() <= FRAME + 0.1, "{} lasts {b} s, source {a} s", output.display());
}

/// The whole file decodes without a single error.
fn assert_plays(path: &Path) {
    let output = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-xerror", "-i"])
        .arg(file_protocol(path))
        .args(["-f", "null", "-"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success() && stderr.is_empty(), "{}: {stderr}", path.display());
}

#[test]
fn h264_aac_mp4_is_remuxed_into_flv_keeping_the_record() {
    let dir = temp_dir();
    let source = file(dir.path(), "clip.mp4");
    small_mp4(&source);
    let record = json!({"kind": "upload", "path": source, "user": {"email": "a@example.org"}});
    let run = run(dir.path(), &[], &format!("{record}\n"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = &run.records[0];
    let output = file(dir.path(), "clip.flv");
    assert_eq!(r["kind"], "video");
    assert_eq!(r["path"], json!(output));
    assert_eq!(r["user"]["email"], "a@example.org");
    assert_eq!(r["video"]["source"], json!(source));
    assert_eq!(r["video"]["remuxed"], true);
    assert_eq!(r["video"]["thumbnail"], json!(file(dir.path(), "clip.png")));
    assert!(r["video"]["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(run.stderr, "", "nothing on stderr in a pipe");
    let probe = ffprobe(&output);
    assert_eq!(format_name(&probe), "flv");
    assert_eq!(codecs(&probe), ["h264", "aac"]);
    assert_same_length(&source, &output);
    assert_plays(&output);
    // Copied, not encoded: the video packets are the source's, byte for byte in size.
    let sizes = |p: &Path| {
        let out = std::process::Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-select_streams",
                "v",
                "-show_entries",
                "packet=size",
                "-of",
                "csv=p=0",
            ])
            .arg(p)
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(sizes(&source), sizes(&output));
    let meta = &r["video"]["metadata"];
    assert_eq!(meta["container"], "flv");
    assert_eq!((meta["width"].as_u64(), meta["height"].as_u64()), (Some(160), Some(120)));
    assert_eq!(meta["frame_rate"], 25.0);
    assert_eq!(
        (meta["video_codec"].as_str(), meta["audio_codec"].as_str()),
        (Some("h264"), Some("aac"))
    );
    assert_eq!(
        (meta["audio_channels"].as_u64(), meta["audio_sample_rate"].as_u64()),
        (Some(1), Some(44100))
    );
    assert_eq!(meta["size"].as_u64(), Some(fs::metadata(&output).unwrap().len()));
    assert!(meta["duration"].as_f64().unwrap() > 0.9 && meta["bit_rate"].as_u64().unwrap() > 0);
    assert_eq!(image_size(&file(dir.path(), "clip.png")), (320, 240, "png".to_owned()));
}

#[test]
fn other_formats_are_encoded_to_h264_and_aac() {
    let dir = temp_dir();
    let d = dir.path();
    make_video(&file(d, "mpeg2.mpg"), 1.0, "160x120", true, MPEG2_MPG);
    make_video(&file(d, "windows.wmv"), 1.0, "160x120", true, WMV);
    make_video(&file(d, "camera.mov"), 1.0, "160x120", true, MOV_PCM);
    make_video(&file(d, "silent.mp4"), 1.0, "160x120", false, H264_AAC_MP4);
    make_video(&file(d, "short.mp4"), 0.5, "160x120", true, H264_AAC_MP4);
    // ffmpeg 5.1 sets a rotation (display matrix) only when copying the stream.
    make_video(&file(d, "upright.mp4"), 1.0, "160x120", true, H264_AAC_MP4);
    let status = std::process::Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i", "upright.mp4", "-c", "copy"])
        .args(["-metadata:s:v", "rotate=90", "phone.mp4"])
        .current_dir(d)
        .status()
        .unwrap();
    assert!(status.success());
    fs::remove_file(file(d, "upright.mp4")).unwrap();
    let names = ["mpeg2.mpg", "windows.wmv", "camera.mov", "silent.mp4", "short.mp4", "phone.mp4"];
    let run = run(d, &names, "");
    assert_eq!(run.code, 0, "{}\n{:#?}", run.stderr, run.records);
    let remuxed = [false, false, false, true, true, false];
    for (name, remuxed) in names.iter().zip(remuxed) {
        let r = run.record(name);
        let stem = name.split('.').next().unwrap();
        let output = file(d, &format!("{stem}.flv"));
        assert_eq!(r["path"], json!(format!("{stem}.flv")), "{r}");
        assert_eq!(r["video"]["remuxed"], remuxed, "{name}");
        let probe = ffprobe(&output);
        assert_eq!(format_name(&probe), "flv");
        let want: &[&str] = if *name == "silent.mp4" { &["h264"] } else { &["h264", "aac"] };
        assert_eq!(codecs(&probe), want, "{name}");
        assert_same_length(&file(d, name), &output);
        assert_plays(&output);
        assert_eq!(image_size(&file(d, &format!("{stem}.png"))).0, 320, "{name}");
    }
    assert_eq!(run.record("silent.mp4")["video"]["metadata"]["audio_codec"], Value::Null);
    // FLV cannot say "turn this": the phone video is encoded upright.
    let phone = &run.record("phone.mp4")["video"]["metadata"];
    assert_eq!((phone["width"].as_u64(), phone["height"].as_u64()), (Some(120), Some(160)));
}

#[test]
fn mp4_and_webm_targets_with_jpeg_thumbnail_and_metadata_file() {
    let dir = temp_dir();
    let d = dir.path();
    make_video(&file(d, "in.mpg"), 1.0, "161x121", true, MPEG2_MPG);
    let args =
        ["--to", "mp4", "--thumbnail-format", "jpg", "--metadata-json", "--thumbnail-at", "99"];
    let run1 = run(d, &[&args[..], &["in.mpg"]].concat(), "");
    assert_eq!(run1.code, 0, "{}", run1.stderr);
    let mp4 = file(d, "in.mp4");
    let probe = ffprobe(&mp4);
    assert_eq!(codecs(&probe), ["h264", "aac"]);
    assert_eq!(probe["streams"][0]["width"], 160, "odd sizes are scaled to even");
    let bytes = fs::read(&mp4).unwrap();
    let at = |tag: &[u8]| bytes.windows(4).position(|w| w == tag).unwrap();
    assert!(at(b"moov") < at(b"mdat"), "faststart puts the index first");
    // A time past the end still gives a thumbnail.
    assert_eq!(image_size(&file(d, "in.jpg")), (320, 240, "mjpeg".to_owned()));
    let sidecar: Value = serde_json::from_slice(&fs::read(file(d, "in.json")).unwrap()).unwrap();
    assert_eq!(sidecar, run1.records[0]["video"]["metadata"]);
    assert_eq!(run1.records[0]["video"]["metadata_file"], "in.json");

    let run2 = run(d, &["--to", "webm", "--out-dir", "web", "in.mp4"], "");
    assert_eq!(run2.code, 78, "the output folder must exist: {}", run2.stderr);
    fs::create_dir(file(d, "web")).unwrap();
    let run3 = run(d, &["--to", "webm", "--out-dir", "web", "--max-height", "100", "in.mp4"], "");
    assert_eq!(run3.code, 0, "{}", run3.stderr);
    let webm = ffprobe(&file(d, "web/in.webm"));
    assert_eq!(format_name(&webm), "matroska,webm");
    assert_eq!(codecs(&webm), ["vp9", "opus"]);
    assert_eq!(webm["streams"][0]["height"], 100);
    assert_eq!(run3.records[0]["video"]["thumbnail"], "web/in.png");
}

#[test]
fn broken_uploads_become_error_records_and_leave_nothing_behind() {
    let dir = temp_dir();
    let d = dir.path();
    make_video(&file(d, "whole.mp4"), 2.0, "160x120", true, H264_AAC_MP4);
    let mut faststart = H264_AAC_MP4.to_vec();
    faststart.extend(["-movflags", "+faststart"]);
    make_video(&file(d, "front.mp4"), 2.0, "160x120", true, &faststart);
    let cut = |from: &str, to: &str| {
        let bytes = fs::read(file(d, from)).unwrap();
        fs::write(file(d, to), &bytes[..bytes.len() / 3]).unwrap();
    };
    cut("front.mp4", "index-first-cut.mp4");
    cut("whole.mp4", "no-index.mp4");
    fs::remove_file(file(d, "front.mp4")).unwrap();
    fs::write(file(d, "notes.mp4"), "this is not a video\n").unwrap();
    fs::write(file(d, "empty.mp4"), "").unwrap();
    make_video(&file(d, "tone.mp4"), 1.0, "160x120", true, &["-vn", "-c:a", "aac"]);
    let before = listing(d);
    let input = "index-first-cut.mp4\nno-index.mp4\nnotes.mp4\nempty.mp4\ntone.mp4\nmissing.mp4\nwhole.mp4\n";
    let run = run(d, &[], input);
    assert_eq!(run.code, 1, "{}", run.stderr);
    let reason = |name: &str| {
        let r = run.record(name);
        assert_eq!(r["error"]["tool"], "convert-video", "{r}");
        assert_eq!(r["path"], name, "the record keeps its path");
        r["error"]["message"].as_str().unwrap().to_owned()
    };
    assert!(reason("index-first-cut.mp4").contains("truncated"));
    assert!(reason("no-index.mp4").contains("no index"));
    assert!(reason("notes.mp4").contains("not a video file"));
    assert!(reason("empty.mp4").contains("empty"));
    assert!(reason("tone.mp4").contains("no video stream"));
    assert!(reason("missing.mp4").contains("does not exist"));
    assert_eq!(run.record("whole.mp4")["kind"], "video", "the stream goes on");
    let mut expected = before;
    expected.extend(["whole.flv".to_owned(), "whole.png".to_owned()]);
    assert_eq!(listing(d), expected);
}

#[test]
fn records_with_errors_or_without_paths_pass_through_untouched() {
    let dir = temp_dir();
    let failed = json!({"kind": "upload", "ts": "2026-01-01T00:00:00Z", "path": "x.mp4",
        "error": {"tool": "watch-uploads", "message": "vetoed"}});
    let pathless = json!({"kind": "note", "ts": "2026-01-01T00:00:00Z", "text": "hi"});
    let run = run(dir.path(), &[], &format!("{failed}\n{pathless}\n"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.records, [failed, pathless]);
}

#[test]
fn field_names_the_path_and_the_source_is_left_alone() {
    let dir = temp_dir();
    let d = dir.path();
    small_mp4(&file(d, "in.mp4"));
    let original = fs::read(file(d, "in.mp4")).unwrap();
    let record = json!({"kind": "upload", "upload": {"file": "in.mp4"}});
    let run = run(d, &["--field", "upload.file", "--reencode"], &format!("{record}\n"));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let r = &run.records[0];
    assert_eq!(
        (r["path"].as_str(), r["video"]["source"].as_str()),
        (Some("in.flv"), Some("in.mp4"))
    );
    assert_eq!(r["upload"]["file"], "in.mp4");
    assert_eq!(r["video"]["remuxed"], false);
    assert_eq!(fs::read(file(d, "in.mp4")).unwrap(), original);
}

#[test]
fn hostile_file_names_are_data() {
    let dir = temp_dir();
    let d = dir.path();
    let names = ["-x y'z\".mp4", "new\nline é.mp4", "a:b%d.mp4"];
    for name in names {
        small_mp4(&file(d, name));
    }
    let mut command = tool(d);
    command.arg("--").args(names).stdin(Stdio::null());
    let run = finish(command.output().unwrap());
    assert_eq!(run.code, 0, "{}", run.stderr);
    for name in names {
        let stem = name.strip_suffix(".mp4").unwrap();
        assert_eq!(run.record(name)["path"], format!("{stem}.flv"));
        assert_eq!(codecs(&ffprobe(&file(d, &format!("{stem}.flv")))), ["h264", "aac"]);
        assert_eq!(image_size(&file(d, &format!("{stem}.png"))).0, 320);
    }
}

#[test]
fn a_second_run_skips_and_other_files_are_not_overwritten() {
    let dir = temp_dir();
    let d = dir.path();
    small_mp4(&file(d, "clip.mp4"));
    let first = run(d, &["clip.mp4"], "");
    assert_eq!(first.code, 0, "{}", first.stderr);
    let made = fs::metadata(file(d, "clip.flv")).unwrap().modified().unwrap();
    let second = run(d, &["--metadata-json", "clip.mp4"], "");
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.records[0]["video"]["skipped"], true);
    assert_eq!(second.records[0]["video"]["metadata"], first.records[0]["video"]["metadata"]);
    let sidecar: Value = serde_json::from_slice(&fs::read(file(d, "clip.json")).unwrap()).unwrap();
    assert_eq!(sidecar, first.records[0]["video"]["metadata"], "a skip adds a missing sidecar");
    assert_eq!(fs::metadata(file(d, "clip.flv")).unwrap().modified().unwrap(), made);

    // clip.mpg also becomes clip.flv: that file is not its conversion.
    make_video(&file(d, "clip.mpg"), 1.0, "160x120", true, MPEG2_MPG);
    let other = run(d, &["clip.mpg"], "");
    assert_eq!(other.code, 1);
    assert!(other.records[0]["error"]["message"].as_str().unwrap().contains("--overwrite"));
    assert_eq!(fs::metadata(file(d, "clip.flv")).unwrap().modified().unwrap(), made);
    let replaced = run(d, &["--overwrite", "clip.mpg"], "");
    assert_eq!(replaced.code, 0, "{}", replaced.stderr);
    assert_eq!(replaced.records[0]["video"]["remuxed"], false);
    let names: Vec<String> = listing(d).into_iter().collect();
    assert_eq!(names, ["clip.flv", "clip.json", "clip.mp4", "clip.mpg", "clip.png"]);
}

/// A record with the parts that vary between runs (time, timing) removed.
fn stable(record: &Value) -> Value {
    let mut record = record.clone();
    let map = record.as_object_mut().unwrap();
    map.remove("ts");
    map["video"].as_object_mut().unwrap().remove("seconds");
    record
}

#[test]
fn two_jobs_give_the_same_results_as_one() {
    let dir = temp_dir();
    let d = dir.path();
    let names = ["a.mp4", "b.mpg", "c.wmv", "d.mov"];
    let args: [&[&str]; 4] = [H264_AAC_MP4, MPEG2_MPG, WMV, MOV_PCM];
    for (name, args) in names.iter().zip(args) {
        make_video(&file(d, name), 1.0, "160x120", true, args);
    }
    fs::create_dir(file(d, "one")).unwrap();
    fs::create_dir(file(d, "two")).unwrap();
    let one = run(d, &[&["--jobs", "1", "--out-dir", "one"], &names[..]].concat(), "");
    let two = run(d, &[&["--jobs", "2", "--out-dir", "two"], &names[..]].concat(), "");
    assert_eq!((one.code, two.code), (0, 0), "{}{}", one.stderr, two.stderr);
    let sorted = |run: &Run, dir: &str| {
        let mut records: Vec<String> = run
            .records
            .iter()
            .map(|r| stable(r).to_string().replace(&format!("{dir}/"), "OUT/"))
            .collect();
        records.sort();
        records
    };
    assert_eq!(sorted(&one, "one"), sorted(&two, "two"));
    assert_eq!(listing(&file(d, "one")), listing(&file(d, "two")));
}

/// A source whose veryslow re-encode takes far longer than the limits the tests set.
fn slow_source(dir: &Path) -> std::path::PathBuf {
    let source = file(dir, "long.mp4");
    make_video(&source, 20.0, "640x480", true, H264_AAC_MP4);
    source
}

#[test]
fn timeout_stops_ffmpeg_and_removes_its_files() {
    let dir = temp_dir();
    let d = dir.path();
    slow_source(d);
    let before = listing(d);
    let args = ["--reencode", "--preset", "veryslow", "--timeout", "1s", "long.mp4"];
    let run = run(d, &args, "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let message = run.records[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("longer than --timeout"), "{message}");
    assert_eq!(listing(d), before);
}

#[test]
fn sigterm_stops_running_jobs_and_passes_their_records_on() {
    let dir = temp_dir();
    let d = dir.path();
    slow_source(d);
    let before = listing(d);
    let child = tool(d)
        .args(["--reencode", "--preset", "veryslow", "long.mp4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait for ffmpeg's temporary output to appear: the conversion is under way.
    let running = (0..600).any(|_| {
        std::thread::sleep(Duration::from_millis(50));
        listing(d)
            .iter()
            .filter(|n| n.starts_with(".convert-video-"))
            .any(|n| listing(&file(d, n)).contains("long.flv"))
    });
    assert!(running, "no temporary output appeared");
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).unwrap();
    let run = finish(child.wait_with_output().unwrap());
    assert_eq!(run.code, 1, "{}", run.stderr);
    let message = run.records[0]["error"]["message"].as_str().unwrap();
    assert!(message.contains("stopped"), "{message}");
    assert_eq!(listing(d), before);
}

#[test]
fn a_failing_ffmpeg_leaves_nothing_and_says_why() {
    let dir = temp_dir();
    let d = dir.path();
    small_mp4(&file(d, "clip.mp4"));
    // Real ffmpeg for the version check; a conversion that writes half a file and fails the way
    // ffmpeg does without the encoder.
    let failing = file(d, "failing-ffmpeg");
    fs::write(
        &failing,
        "#!/bin/sh\n[ \"$2\" = -version ] && exec ffmpeg \"$@\"\n\
         for a; do case \"$a\" in file:*.part|file:*/.convert-video-*) echo partial > \"${a#file:}\";; esac; done\n\
         echo \"Unknown encoder 'libx264'\" >&2\necho 'Conversion failed!' >&2\nexit 1\n",
    )
    .unwrap();
    fs::set_permissions(&failing, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let before = listing(d);
    let run = run(d, &["--ffmpeg", failing.to_str().unwrap(), "clip.mp4"], "");
    assert_eq!(run.code, 1, "{}", run.stderr);
    let message = run.records[0]["error"]["message"].as_str().unwrap();
    assert_eq!(message, "ffmpeg failed: Unknown encoder 'libx264'");
    assert_eq!(listing(d), before);
}

#[test]
fn missing_or_old_ffmpeg_exits_69_with_advice() {
    let dir = temp_dir();
    let d = dir.path();
    let missing = run(d, &["--ffmpeg", "/nonexistent/ffmpeg", "x.mp4"], "");
    assert_eq!(missing.code, 69);
    assert!(missing.stderr.contains("apt-get install ffmpeg"), "{}", missing.stderr);
    let old = file(d, "old-ffmpeg");
    fs::write(&old, "#!/bin/sh\necho 'ffmpeg version 3.4.8-0ubuntu0.2 Copyright'\n").unwrap();
    fs::set_permissions(&old, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let too_old = run(d, &["--ffmpeg", old.to_str().unwrap(), "x.mp4"], "");
    assert_eq!(too_old.code, 69);
    assert!(too_old.stderr.contains("too old"), "{}", too_old.stderr);
    assert!(too_old.records.is_empty());
}
