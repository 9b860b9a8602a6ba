//! `convert-video`: the second step of the upload workflow. For each uploaded video it checks
//! the file with `ffprobe`, converts it with `ffmpeg` (copying the streams when they already fit
//! the target container), describes the result and takes a thumbnail, and passes the record on.

pub mod child;
pub mod convert;
pub mod plan;
pub mod probe;
pub mod progress;
pub mod tools;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use crossbeam_channel::{Receiver, Sender};
use opsline::man::Example;
use opsline::{Code, CommonArgs, Context, Flush, InputArgs, Record, RecordWriter, WithCode};
use serde_json::{Map, Value};

use crate::convert::{At, Done, Settings};
use crate::plan::{Encoding, ImageFormat, Target};
use crate::progress::Progress;

/// The tool's name.
pub const TOOL: &str = "convert-video";

/// Containers and codecs accepted by default: what phones, cameras and editors upload.
pub const DEFAULT_ALLOW: &str = "mov,mp4,m4v,3gp,matroska,webm,avi,flv,mpeg,mpegts,asf,ogg,\
h264,hevc,mpeg4,mpeg2video,mpeg1video,vp8,vp9,av1,wmv1,wmv2,wmv3,vc1,flv1,theora,mjpeg,h263,\
prores,dvvideo,aac,mp3,mp2,ac3,eac3,opus,vorbis,flac,alac,wmav1,wmav2,nellymoser,amr_nb,\
pcm_s16le,pcm_s16be,pcm_s24le,pcm_s24be,pcm_f32le,pcm_u8,pcm_alaw,pcm_mulaw";

/// Validate, convert, describe and thumbnail uploaded videos.
#[derive(Debug, Parser)]
#[command(
    version,
    about = "Validate, convert, describe and thumbnail uploaded videos with ffmpeg",
    long_about = "For each video (a record's path, or a path argument) convert-video checks the file with ffprobe: \
its container and codecs must be in --allow, and a file that is not a video, has no video stream or is truncated \
(an incomplete upload) becomes an error record that says why, while the stream goes on. A good file is converted \
to --to (FLV by default) in --out-dir (default: beside it), named after it with the new extension. When its \
streams already fit the target (H.264 and AAC into FLV or MP4) they are copied without re-encoding, which takes \
a fraction of a second; otherwise they are encoded (H.264 and AAC for FLV and MP4, VP9 and Opus for WebM). \
The output keeps the first video stream and the first audio stream (cover art, subtitles and data streams are \
left out). A thumbnail (NAME.png, or NAME.jpg) is taken beside the output in the same ffmpeg run, and the result is probed again before the record says it worked.\n\n\
The output record is the input record with \"kind\": \"video\", \"path\" set to the converted file and a \
\"video\" object: source, output, thumbnail, remuxed, metadata (container, duration, size, bit_rate, width, \
height, frame_rate, video_codec, audio_codec, audio_channels, audio_sample_rate), seconds, and \"skipped\": true \
when an up-to-date output already existed. Records with an error or without a path pass through untouched.\n\n\
ffmpeg writes into a private hidden folder beside the outputs (.convert-video-XXXXXX, mode 0700); the \
files are checked, then renamed to their final names. A failed, timed out or stopped conversion leaves nothing behind, and the source is never changed. An existing output that is \
newer than its source and was made from it (this tool names the source in the output's comment tag) is kept \
and reported as skipped, without \"remuxed\"; any other existing file at an output name is only \
replaced with --overwrite. ffmpeg gets file names as arguments through its file: protocol, never through a shell, \
so any name works. SIGTERM stops running conversions as --timeout does (SIGTERM to ffmpeg, SIGKILL after \
--kill-after) and passes their records on as errors.\n\n\
By default --allow accepts the containers mov (and mp4, m4v, 3gp), matroska, webm, avi, flv, mpeg, mpegts, \
asf (WMV) and ogg; the video codecs h264, hevc, mpeg4, mpeg2video, mpeg1video, vp8, vp9, av1, wmv1, wmv2, wmv3, \
vc1, flv1, theora, mjpeg, h263, prores and dvvideo; and the audio codecs aac, mp3, mp2, ac3, eac3, opus, vorbis, \
flac, alac, wmav1, wmav2, nellymoser, amr_nb and the common PCM formats (pcm_s16le, pcm_s16be, pcm_s24le, \
pcm_s24be, pcm_f32le, pcm_u8, pcm_alaw, pcm_mulaw)."
)]
pub struct Cli {
    #[command(flatten)]
    pub input: InputArgs,

    /// Container to convert to
    #[arg(long, value_enum, default_value_t = Target::Flv, value_name = "FORMAT")]
    pub to: Target,

    /// Folder for the converted files and thumbnails (default: beside each source)
    #[arg(long, value_name = "DIR")]
    pub out_dir: Option<PathBuf>,

    /// Container and codec names (as ffprobe names them) a source may use, comma-separated;
    /// replaces the default list (listed in the description)
    #[arg(long, value_name = "NAMES", value_delimiter = ',', default_value = DEFAULT_ALLOW, hide_default_value = true)]
    pub allow: Vec<String>,

    /// Encode even when the streams could be copied as they are
    #[arg(long)]
    pub reencode: bool,

    /// Encoding quality, lower is better (default 23 for H.264, 32 for VP9)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(0..=63))]
    pub crf: Option<u8>,

    /// x264 preset (ultrafast … veryslow); VP9 uses the matching speed
    #[arg(long, value_name = "NAME", default_value = "medium", value_parser = [
        "ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow"])]
    pub preset: String,

    /// Scale taller videos down to this height (forces encoding for them)
    #[arg(long, value_name = "PIXELS", value_parser = clap::value_parser!(u32).range(16..))]
    pub max_height: Option<u32>,

    /// Replace existing files at the output names that are not up-to-date conversions
    #[arg(long)]
    pub overwrite: bool,

    /// Also write the metadata beside the output as NAME.json
    #[arg(long)]
    pub metadata_json: bool,

    /// Where the thumbnail is taken: seconds (12.5) or a share of the duration (10%); kept
    /// inside the video
    #[arg(long, value_name = "WHEN", default_value = "10%")]
    pub thumbnail_at: At,

    /// Thumbnail width in pixels; the height keeps the aspect ratio
    #[arg(long, value_name = "PIXELS", default_value_t = 320, value_parser = clap::value_parser!(u32).range(16..=8192))]
    pub thumbnail_width: u32,

    /// Thumbnail image format
    #[arg(long, value_enum, default_value_t = ImageFormat::Png, value_name = "FORMAT")]
    pub thumbnail_format: ImageFormat,

    /// Conversions run at once; records come out as they finish
    #[arg(long, short = 'j', value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,

    /// Wall-clock limit per file (e.g. 90, 90s, 10m, 1h); ffmpeg is stopped and its partial
    /// files removed when it is reached
    #[arg(long, value_name = "DURATION", value_parser = opsline::units::parse_duration)]
    pub timeout: Option<Duration>,

    /// Time ffmpeg gets to exit after SIGTERM before SIGKILL
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = opsline::units::parse_duration)]
    pub kill_after: Duration,

    /// The ffmpeg program
    #[arg(long, value_name = "PATH", default_value = "ffmpeg")]
    pub ffmpeg: PathBuf,

    /// The ffprobe program
    #[arg(long, value_name = "PATH", default_value = "ffprobe")]
    pub ffprobe: PathBuf,

    #[command(flatten)]
    pub common: CommonArgs,
}

impl opsline::Tool for Cli {
    fn common(&self) -> &CommonArgs {
        &self.common
    }
}

/// Examples for the man page.
pub const EXAMPLES: &[Example] = &[
    Example {
        title: "Convert every upload to FLV beside it and mail the uploader.",
        command: "watch-uploads --users users.json /srv/sftp | convert-video | notify --smtp smtp://mail:587 --to-field user.email",
    },
    Example {
        title: "Convert a folder's videos to MP4 no taller than 720 lines, two at a time, into /srv/www/video.",
        command: "find /srv/incoming -name '*.mov' | convert-video --to mp4 --max-height 720 --jobs 2 --out-dir /srv/www/video",
    },
    Example {
        title: "WebM with a JPEG thumbnail 5 seconds in and a metadata file, at most 10 minutes per file.",
        command: "convert-video --to webm --thumbnail-at 5 --thumbnail-format jpg --metadata-json --timeout 10m talk.mp4",
    },
];

/// Runs the tool.
pub fn run(cli: Cli, ctx: &Context) -> anyhow::Result<Code> {
    tools::check_both(&cli.ffmpeg, &cli.ffprobe)?;
    if let Some(dir) = cli.out_dir.as_ref().filter(|d| !d.is_dir()) {
        return Err(opsline::exit::err(
            Code::Config,
            format!("--out-dir {} is not an existing folder", dir.display()),
        ));
    }
    let settings = settings(&cli);
    let progress = Progress::new(std::io::stderr().is_terminal());
    let out = RecordWriter::stdout(ctx.tool, Flush::EachRecord)?;
    let (jobs, queue) = crossbeam_channel::bounded::<(Record, PathBuf)>(0);
    let (results, finished) = crossbeam_channel::unbounded::<Record>();
    std::thread::scope(|scope| {
        let writer = scope.spawn(move || write_all(out, &finished));
        for _ in 0..cli.jobs {
            let (queue, results) = (queue.clone(), results.clone());
            let (settings, progress) = (&settings, &progress);
            scope.spawn(move || work(&queue, &results, settings, progress, ctx));
        }
        drop(queue);
        let read = dispatch(&cli.input, &jobs, &results, ctx);
        drop((jobs, results));
        let written = writer.join().expect("the writer thread does not panic");
        read?;
        written.code(Code::IoErr, "cannot write records")
    })
}

fn settings(cli: &Cli) -> Settings {
    Settings {
        ffmpeg: cli.ffmpeg.clone(),
        ffprobe: cli.ffprobe.clone(),
        target: cli.to,
        out_dir: cli.out_dir.clone(),
        allow: cli.allow.iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()).collect(),
        encoding: Encoding {
            force: cli.reencode,
            crf: cli.crf,
            preset: cli.preset.clone(),
            max_height: cli.max_height,
        },
        overwrite: cli.overwrite,
        metadata_json: cli.metadata_json,
        thumbnail_at: cli.thumbnail_at,
        thumbnail_width: cli.thumbnail_width,
        thumbnail_format: cli.thumbnail_format,
        timeout: cli.timeout,
        grace: cli.kill_after,
    }
}

/// Hands records with a path to the workers and passes the others straight on.
fn dispatch(
    input: &InputArgs,
    jobs: &Sender<(Record, PathBuf)>,
    results: &Sender<Record>,
    ctx: &Context,
) -> anyhow::Result<()> {
    for item in opsline::RecordReader::start(ctx.tool, input, &ctx.shutdown) {
        let mut record = item.map_err(opsline::input::InputError::into_fatal)?;
        if record.passes_through(&input.field) {
            let _ = results.send(record);
            continue;
        }
        match record.input_path(&input.field) {
            Some(Ok(path)) => {
                if jobs.send((record, path)).is_err() {
                    break;
                }
            }
            Some(Err(message)) => {
                record.set_error(ctx.tool, message);
                let _ = results.send(record);
            }
            None => {
                let _ = results.send(record);
            }
        }
    }
    Ok(())
}

fn work(
    queue: &Receiver<(Record, PathBuf)>,
    results: &Sender<Record>,
    settings: &Settings,
    progress: &Progress,
    ctx: &Context,
) {
    for (record, source) in queue {
        let started = Instant::now();
        let bar = progress.bar();
        let outcome = convert::convert(&source, settings, &ctx.shutdown, &bar);
        drop(bar);
        let took = started.elapsed();
        let record = progress.suspend(|| finish_record(record, &source, outcome, took, ctx.tool));
        if results.send(record).is_err() {
            return;
        }
    }
}

fn write_all(mut out: RecordWriter, finished: &Receiver<Record>) -> std::io::Result<Code> {
    for record in finished {
        out.write(&record)?;
    }
    out.finish()
}

/// The input record with this tool's results, or with its error.
pub fn finish_record(
    mut record: Record,
    source: &Path,
    outcome: Result<Done, String>,
    took: Duration,
    tool: &str,
) -> Record {
    let done = match outcome {
        Ok(done) => done,
        Err(message) => {
            tracing::warn!(source = %source.display(), "{message}");
            record.set_error(tool, message);
            return record;
        }
    };
    if let Err(e) = record.set_path(&done.outputs.video) {
        record.set_error(tool, e);
        return record;
    }
    tracing::info!(source = %source.display(), output = %done.outputs.video.display(), skipped = done.skipped, "done");
    record.set_kind("video");
    record.insert("video", Value::Object(video_field(source, &done, took)));
    record
}

fn video_field(source: &Path, done: &Done, took: Duration) -> Map<String, Value> {
    let text = |p: &Path| Value::from(p.to_string_lossy().into_owned());
    let mut video = Map::new();
    video.insert("source".into(), text(source));
    video.insert("output".into(), text(&done.outputs.video));
    video.insert("thumbnail".into(), text(&done.outputs.thumbnail));
    if let Some(remuxed) = done.remuxed {
        video.insert("remuxed".into(), remuxed.into());
    }
    video.insert("metadata".into(), done.metadata.clone());
    if let Some(sidecar) = &done.outputs.sidecar {
        video.insert("metadata_file".into(), text(sidecar));
    }
    video.insert("seconds".into(), ((took.as_secs_f64() * 1000.0).round() / 1000.0).into());
    if done.skipped {
        video.insert("skipped".into(), true.into());
    }
    video
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_description_names_every_default_allowed_format() {
        let command = <Cli as clap::CommandFactory>::command();
        let text = command.get_long_about().unwrap().to_string();
        let listed = text.split("By default --allow accepts").nth(1).unwrap();
        for name in DEFAULT_ALLOW.split(',') {
            assert!(listed.contains(name), "{name} is not described");
        }
    }
}
