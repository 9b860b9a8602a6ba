//! The cheapest correct way to turn a probed file into the target container: copy each stream
//! the container can hold as it is, encode the others with good defaults, and take the
//! thumbnail in the same ffmpeg run.

use std::ffi::OsString;
use std::path::Path;

use crate::probe::{Probe, Stream, file_arg};

/// The container to convert to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// Flash Video with H.264 and AAC (what the existing site serves)
    Flv,
    /// MP4 with H.264 and AAC, index at the front for streaming
    Mp4,
    /// WebM with VP9 and Opus
    Webm,
}

impl Target {
    /// The file name extension, also ffmpeg's muxer name.
    pub fn extension(self) -> &'static str {
        match self {
            Target::Flv => "flv",
            Target::Mp4 => "mp4",
            Target::Webm => "webm",
        }
    }

    fn copies_video(self, video: &Stream) -> bool {
        let codecs: &[&str] = match self {
            Target::Flv | Target::Mp4 => &["h264"],
            Target::Webm => &["vp8", "vp9"],
        };
        // Browsers and Flash play 8-bit 4:2:0 only; other pixel formats get re-encoded.
        let plain_pixels = matches!(video.pix_fmt.as_deref(), Some("yuv420p" | "yuvj420p"));
        // Only MP4 carries a copied stream's rotation; for the others encoding turns the frames.
        let upright = self == Target::Mp4 || video.rotation % 360 == 0;
        codecs.contains(&video.codec.as_str()) && plain_pixels && upright
    }

    fn copies_audio(self, audio: &Stream) -> bool {
        match (self, audio.codec.as_str()) {
            (Target::Flv, "aac") | (Target::Mp4, "aac" | "mp3") => true,
            // FLV's header can only say 44.1, 22.05 or 11.025 kHz for MP3.
            (Target::Flv, "mp3") => matches!(audio.sample_rate, Some(44100 | 22050 | 11025)),
            (Target::Webm, codec) => matches!(codec, "opus" | "vorbis"),
            _ => false,
        }
    }

    fn video_codec(self) -> &'static str {
        match self {
            Target::Flv | Target::Mp4 => "h264",
            Target::Webm => "vp9",
        }
    }

    fn audio_codec(self) -> &'static str {
        match self {
            Target::Flv | Target::Mp4 => "aac",
            Target::Webm => "opus",
        }
    }
}

/// The thumbnail's image format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ImageFormat {
    /// PNG, lossless
    Png,
    /// JPEG, smaller
    Jpg,
}

impl ImageFormat {
    /// The file name extension.
    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpg => "jpg",
        }
    }
}

/// How the encoder is set up when a stream has to be encoded.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    /// Encode even when the streams could be copied.
    pub force: bool,
    /// Quality (lower is better); the encoder's default when `None`.
    pub crf: Option<u8>,
    /// x264 preset name; VP9 gets the matching speed.
    pub preset: String,
    /// Scale down to at most this many lines.
    pub max_height: Option<u32>,
}

/// Where the thumbnail comes from and how it looks.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thumbnail {
    /// Seconds into the video.
    pub at: f64,
    /// Width in pixels; the height keeps the aspect ratio.
    pub width: u32,
    /// Image format.
    pub format: ImageFormat,
}

/// What happens to each stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The target container.
    pub target: Target,
    /// The video stream to use.
    pub video: Stream,
    /// Copied (true) or encoded.
    pub copy_video: bool,
    /// The audio stream to use, if the file has one.
    pub audio: Option<Stream>,
    /// Copied (true) or encoded.
    pub copy_audio: bool,
}

impl Plan {
    /// Chooses copy or encode for each stream of a validated file.
    pub fn choose(probe: &Probe, target: Target, encoding: &Encoding) -> Option<Plan> {
        let video = probe.video.clone()?;
        let too_tall =
            matches!((encoding.max_height, video.height), (Some(max), Some(h)) if h > max);
        let copy_video = !encoding.force && !too_tall && target.copies_video(&video);
        let audio = probe.audio.clone();
        let copy_audio = !encoding.force && audio.as_ref().is_some_and(|a| target.copies_audio(a));
        Some(Plan { target, video, copy_video, audio, copy_audio })
    }

    /// True when nothing is encoded.
    pub fn is_remux(&self) -> bool {
        self.copy_video && (self.audio.is_none() || self.copy_audio)
    }

    /// The codecs the output must have.
    pub fn expected_codecs(&self) -> (String, Option<String>) {
        let video = if self.copy_video {
            self.video.codec.clone()
        } else {
            self.target.video_codec().to_owned()
        };
        let audio = self.audio.as_ref().map(|audio| {
            if self.copy_audio { audio.codec.clone() } else { self.target.audio_codec().to_owned() }
        });
        (video, audio)
    }
}

/// The second input's read window after the thumbnail's seek point: a second, or three frames
/// of a slide show, so that it holds a frame.
fn thumbnail_window(video: &Stream) -> f64 {
    video.frame_rate.map_or(1.0, |rate| (3.0 / rate).max(1.0))
}

/// The full ffmpeg command line (without the program) that writes the converted file to
/// `output` and the thumbnail to `thumbnail`, reporting progress on standard output.
pub fn ffmpeg_args(
    plan: &Plan,
    encoding: &Encoding,
    thumbnail: &Thumbnail,
    source: &Path,
    output: &Path,
    thumbnail_path: &Path,
) -> Vec<OsString> {
    let mut args = strings(&["-nostdin", "-hide_banner", "-v", "error", "-nostats"]);
    args.extend(strings(&["-progress", "pipe:1", "-abort_on", "empty_output_stream"]));
    args.extend(strings(&["-i"]));
    args.push(file_arg(source));
    // The thumbnail reads a second copy of the input from a fast seek, for one second only, so
    // a remux does not have to decode the whole video to find one frame.
    let window = seconds(thumbnail_window(&plan.video));
    args.extend(strings(&["-ss", &seconds(thumbnail.at), "-t", &window, "-i"]));
    args.push(file_arg(source));
    args.extend(output_args(plan, encoding));
    args.push(OsString::from("-metadata"));
    args.push(source_tag(source, "comment="));
    args.push(file_arg(output));
    args.extend(thumbnail_args(plan, thumbnail));
    args.push(file_arg(thumbnail_path));
    args
}

/// What the outputs' `comment` tag says about their source, so that a later run can tell its
/// own up-to-date output from a file of the same name made from another source (`clip.mpg`
/// and `clip.wmv` both become `clip.flv`).
pub fn source_tag(source: &Path, prefix: &str) -> OsString {
    let mut tag = OsString::from(prefix);
    tag.push("convert-video source: ");
    tag.push(source.file_name().unwrap_or_default());
    tag
}

fn output_args(plan: &Plan, encoding: &Encoding) -> Vec<OsString> {
    let mut args = strings(&["-map", &format!("0:{}", plan.video.index)]);
    if let Some(audio) = &plan.audio {
        args.extend(strings(&["-map", &format!("0:{}", audio.index)]));
    }
    if plan.copy_video {
        args.extend(strings(&["-c:v", "copy"]));
    } else {
        args.extend(video_encoder(plan, encoding));
    }
    if plan.audio.is_some() {
        args.extend(if plan.copy_audio { strings(&["-c:a", "copy"]) } else { audio_encoder(plan) });
    }
    if plan.target == Target::Mp4 {
        args.extend(strings(&["-movflags", "+faststart"]));
    }
    args.extend(strings(&["-f", plan.target.extension(), "-y"]));
    args
}

fn video_encoder(plan: &Plan, encoding: &Encoding) -> Vec<OsString> {
    let mut args = match plan.target {
        Target::Flv | Target::Mp4 => {
            let crf = encoding.crf.unwrap_or(23).to_string();
            strings(&["-c:v", "libx264", "-preset", &encoding.preset, "-crf", &crf])
        }
        Target::Webm => {
            let crf = encoding.crf.unwrap_or(32).to_string();
            let speed = vp9_speed(&encoding.preset).to_string();
            strings(&["-c:v", "libvpx-vp9", "-crf", &crf, "-b:v", "0", "-row-mt", "1"])
                .into_iter()
                .chain(strings(&["-deadline", "good", "-cpu-used", &speed]))
                .collect()
        }
    };
    args.extend(strings(&["-pix_fmt", "yuv420p"]));
    if let Some(filter) = scale_filter(&plan.video, encoding.max_height) {
        args.extend(strings(&["-vf", &filter]));
    }
    args
}

/// 4:2:0 needs even frame sizes; a taller video than `--max-height` is scaled down.
fn scale_filter(video: &Stream, max_height: Option<u32>) -> Option<String> {
    match (max_height, video.height) {
        (Some(max), Some(height)) if height > max => Some(format!("scale=-2:{}", max & !1)),
        _ => {
            let odd =
                video.width.is_some_and(|w| w % 2 == 1) || video.height.is_some_and(|h| h % 2 == 1);
            odd.then(|| "scale=trunc(iw/2)*2:trunc(ih/2)*2".to_owned())
        }
    }
}

/// libvpx's `-cpu-used` (0 slowest … 8 fastest) for an x264 preset name.
fn vp9_speed(preset: &str) -> u8 {
    match preset {
        "ultrafast" | "superfast" => 8,
        "veryfast" | "faster" => 6,
        "fast" => 5,
        "medium" => 4,
        "slow" => 3,
        "slower" => 2,
        _ => 1,
    }
}

fn audio_encoder(plan: &Plan) -> Vec<OsString> {
    match plan.target {
        Target::Flv | Target::Mp4 => strings(&["-c:a", "aac", "-b:a", "128k"]),
        Target::Webm => strings(&["-c:a", "libopus", "-b:a", "96k"]),
    }
}

fn thumbnail_args(plan: &Plan, thumbnail: &Thumbnail) -> Vec<OsString> {
    let mut args = strings(&["-map", &format!("1:{}", plan.video.index), "-frames:v", "1"]);
    let scale = format!("scale={}:-2", thumbnail.width);
    args.extend(strings(&["-vf", &scale, "-an", "-sn", "-dn"]));
    // image2pipe writes the name as given: image2 would read `%d` in a file name as a pattern.
    let codec: &[&str] = match thumbnail.format {
        ImageFormat::Png => &["-c:v", "png"],
        ImageFormat::Jpg => &["-c:v", "mjpeg", "-q:v", "3"],
    };
    args.extend(strings(codec));
    args.extend(strings(&["-f", "image2pipe", "-y"]));
    args
}

fn seconds(value: f64) -> String {
    format!("{value:.3}")
}

fn strings(items: &[&str]) -> Vec<OsString> {
    items.iter().map(OsString::from).collect()
}

/// The thumbnail time for a video: `requested`, kept inside the video so that a frame exists
/// there (a time past the end gives no image at all).
pub fn thumbnail_time(requested: f64, probe: &Probe) -> f64 {
    let Some(duration) = probe.duration else { return 0.0 };
    let frame = probe.video.as_ref().and_then(|v| v.frame_rate).map_or(0.1, |r| 1.0 / r);
    let last = (duration - 2.0 * frame).max(0.0);
    requested.clamp(0.0, last)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(index: u32, codec: &str) -> Stream {
        Stream {
            index,
            codec: codec.to_owned(),
            pix_fmt: Some("yuv420p".to_owned()),
            width: Some(160),
            height: Some(120),
            frame_rate: Some(25.0),
            sample_rate: Some(48000),
            channels: Some(2),
            frames: None,
            packets_read: None,
            rotation: 0,
        }
    }

    fn probe(video: &str, audio: Option<&str>) -> Probe {
        Probe {
            format_names: vec!["mov".to_owned()],
            duration: Some(2.0),
            size: None,
            bit_rate: None,
            video: Some(stream(0, video)),
            audio: audio.map(|a| stream(1, a)),
            comment: None,
        }
    }

    fn encoding() -> Encoding {
        Encoding { force: false, crf: None, preset: "medium".to_owned(), max_height: None }
    }

    #[test]
    fn h264_and_aac_remux_into_flv_and_mp4_but_not_webm() {
        let p = probe("h264", Some("aac"));
        assert!(Plan::choose(&p, Target::Flv, &encoding()).unwrap().is_remux());
        assert!(Plan::choose(&p, Target::Mp4, &encoding()).unwrap().is_remux());
        let webm = Plan::choose(&p, Target::Webm, &encoding()).unwrap();
        assert!(!webm.copy_video && !webm.copy_audio);
        assert_eq!(webm.expected_codecs(), ("vp9".to_owned(), Some("opus".to_owned())));
    }

    #[test]
    fn only_the_unfit_stream_is_encoded() {
        let plan = Plan::choose(&probe("h264", Some("pcm_s16le")), Target::Flv, &encoding());
        let plan = plan.unwrap();
        assert!(plan.copy_video && !plan.copy_audio && !plan.is_remux());
        let mp3 = Plan::choose(&probe("h264", Some("mp3")), Target::Flv, &encoding()).unwrap();
        assert!(!mp3.copy_audio, "48 kHz MP3 does not fit FLV");
        let silent = Plan::choose(&probe("h264", None), Target::Flv, &encoding()).unwrap();
        assert!(silent.is_remux());
        let mut upright = probe("h264", None);
        upright.video.as_mut().unwrap().rotation = 90;
        assert!(!Plan::choose(&upright, Target::Flv, &encoding()).unwrap().copy_video);
        assert!(Plan::choose(&upright, Target::Mp4, &encoding()).unwrap().copy_video);
    }

    #[test]
    fn force_and_max_height_encode() {
        let p = probe("h264", Some("aac"));
        let forced = Encoding { force: true, ..encoding() };
        assert!(!Plan::choose(&p, Target::Flv, &forced).unwrap().copy_video);
        let small = Encoding { max_height: Some(101), ..encoding() };
        let plan = Plan::choose(&p, Target::Flv, &small).unwrap();
        assert!(!plan.copy_video);
        assert_eq!(scale_filter(&plan.video, Some(101)).as_deref(), Some("scale=-2:100"));
    }

    #[test]
    fn odd_sizes_get_an_even_scale() {
        let mut video = stream(0, "mpeg2video");
        assert_eq!(scale_filter(&video, None), None);
        video.width = Some(161);
        assert_eq!(
            scale_filter(&video, None).as_deref(),
            Some("scale=trunc(iw/2)*2:trunc(ih/2)*2")
        );
    }

    #[test]
    fn the_thumbnail_window_holds_a_frame() {
        let mut video = stream(0, "h264");
        assert_eq!(thumbnail_window(&video), 1.0);
        video.frame_rate = Some(0.5);
        assert_eq!(thumbnail_window(&video), 6.0);
    }

    #[test]
    fn thumbnail_time_stays_inside_the_video() {
        let p = probe("h264", None);
        assert_eq!(thumbnail_time(0.2, &p), 0.2);
        assert!((thumbnail_time(100.0, &p) - 1.92).abs() < 1e-9);
        let no_duration = Probe { duration: None, ..p };
        assert_eq!(thumbnail_time(5.0, &no_duration), 0.0);
    }

    #[test]
    fn names_reach_ffmpeg_through_the_file_protocol() {
        let p = probe("h264", Some("aac"));
        let plan = Plan::choose(&p, Target::Mp4, &encoding()).unwrap();
        let thumb = Thumbnail { at: 0.2, width: 320, format: ImageFormat::Png };
        let args = ffmpeg_args(
            &plan,
            &encoding(),
            &thumb,
            Path::new("/up/-x y.mp4"),
            Path::new("/out/.-x y.mp4.part"),
            Path::new("/out/.-x y.png.part"),
        );
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args.iter().filter(|a| *a == "file:/up/-x y.mp4").count(), 2);
        assert!(args.contains(&"file:/out/.-x y.mp4.part".to_owned()));
        assert!(args.contains(&"+faststart".to_owned()));
        assert_eq!(args[0], "-nostdin");
    }
}
