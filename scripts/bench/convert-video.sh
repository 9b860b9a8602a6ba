#!/usr/bin/env bash
# convert-video against bare ffmpeg, side by side in one run (hyperfine):
#  1. remux path (H.264/AAC MP4 -> FLV, with probe, metadata, thumbnail, output check) versus a
#     full re-encode of the same clip by bare ffmpeg;
#  2. our re-encode path (--reencode, with probe, metadata, thumbnail, output check) versus the
#     bare `ffmpeg -i in -c:v libx264 -c:a aac out.flv` alone;
#  3. 8 clips with --jobs 2 versus --jobs 1, on the remux path (8 x 30 s 720p) and on the
#     encode path (8 x 10 s 640x360).
# The data is a 30 s 1280x720 H.264/AAC clip made with ffmpeg's lavfi sources in a temporary
# folder. Needs ffmpeg, hyperfine and python3 (installed with apt-get when missing).
set -euo pipefail
cd "$(dirname "$0")/../.."

need=()
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v hyperfine >/dev/null || need+=(hyperfine)
command -v python3 >/dev/null || need+=(python3)
if [ "${#need[@]}" -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq "${need[@]}"
fi

cargo build --release -q -p convert-video
tool="$PWD/target/release/convert-video"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"

echo "making test clips in $work"
ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=1280x720:rate=30:duration=30 \
  -f lavfi -i sine=frequency=440:sample_rate=44100:duration=30 \
  -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -shortest clip.mp4
ffmpeg -nostdin -v error -y -f lavfi -i testsrc2=size=640x360:rate=30:duration=10 \
  -f lavfi -i sine=frequency=440:sample_rate=44100:duration=10 \
  -c:v libx264 -preset veryfast -pix_fmt yuv420p -c:a aac -shortest small.mp4
mkdir -p remux encode bare big8 small8 out8
for i in 1 2 3 4 5 6 7 8; do
  cp clip.mp4 "big8/clip$i.mp4"
  cp small.mp4 "small8/small$i.mp4"
done

# Prints "name mean stddev" (seconds) for each command of a hyperfine JSON export.
means() {
  python3 -c 'import json,sys
for r in json.load(open(sys.argv[1]))["results"]:
    print(r["command"], r["mean"], r["stddev"] or 0)' "$1"
}
ratio() {
  python3 -c 'import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); print(f"{a / b:.2f}")' "$1" "$2"
}
mean_of() { means "$1" | awk -v n="$2" '$1 == n { print $2 }'; }

echo "== single 30 s 720p clip"
hyperfine --style basic --runs 3 --export-json single.json \
  --prepare 'rm -f remux/* encode/* bare/*' \
  -n remux "$tool -q --out-dir remux clip.mp4" \
  -n ours-reencode "$tool -q --reencode --out-dir encode clip.mp4" \
  -n bare-reencode "ffmpeg -nostdin -v error -y -i clip.mp4 -c:v libx264 -c:a aac bare/clip.flv"

echo "== 8 clips, --jobs 2 vs --jobs 1"
hyperfine --style basic --runs 3 --export-json jobs-remux.json \
  --prepare 'rm -f out8/*' \
  -n remux-jobs1 "$tool -q --jobs 1 --out-dir out8 big8/clip1.mp4 big8/clip2.mp4 big8/clip3.mp4 big8/clip4.mp4 big8/clip5.mp4 big8/clip6.mp4 big8/clip7.mp4 big8/clip8.mp4" \
  -n remux-jobs2 "$tool -q --jobs 2 --out-dir out8 big8/clip1.mp4 big8/clip2.mp4 big8/clip3.mp4 big8/clip4.mp4 big8/clip5.mp4 big8/clip6.mp4 big8/clip7.mp4 big8/clip8.mp4"
hyperfine --style basic --runs 2 --export-json jobs-encode.json \
  --prepare 'rm -f out8/*' \
  -n encode-jobs1 "$tool -q --reencode --jobs 1 --out-dir out8 small8/small1.mp4 small8/small2.mp4 small8/small3.mp4 small8/small4.mp4 small8/small5.mp4 small8/small6.mp4 small8/small7.mp4 small8/small8.mp4" \
  -n encode-jobs2 "$tool -q --reencode --jobs 2 --out-dir out8 small8/small1.mp4 small8/small2.mp4 small8/small3.mp4 small8/small4.mp4 small8/small5.mp4 small8/small6.mp4 small8/small7.mp4 small8/small8.mp4"

remux=$(mean_of single.json remux)
ours=$(mean_of single.json ours-reencode)
bare=$(mean_of single.json bare-reencode)
echo
echo "== results (mean seconds)"
means single.json
means jobs-remux.json
means jobs-encode.json
echo
echo "remux is $(ratio "$bare" "$remux")x faster than a bare full re-encode (goal >= 20x)"
echo "our re-encode with metadata and thumbnail takes $(ratio "$ours" "$bare")x the bare re-encode's time (goal <= 1.10x)"
echo "--jobs 2 speed-up over --jobs 1: remux $(ratio "$(mean_of jobs-remux.json remux-jobs1)" "$(mean_of jobs-remux.json remux-jobs2)")x, encode $(ratio "$(mean_of jobs-encode.json encode-jobs1)" "$(mean_of jobs-encode.json encode-jobs2)")x"
