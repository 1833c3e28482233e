//! Opening a file with FFmpeg and reading its stream facts (feature `ffmpeg`).
//!
//! [`open_input`] maps every way a path can fail to open onto a [`MediaError`] naming the
//! file. [`Streams::read`] picks the best video and audio streams and collects what the
//! environment needs (duration, frame rate, size, audio presence). [`check_tail`] catches the
//! truncated file whose index survived (an MP4 written with `+faststart` and cut short): it
//! seeks near the end and reads packets (no decoding), and fails when the data stops before
//! the index says the video does. A file cut before its index (a plain MP4 cut short) already
//! fails to open.
//!
//! Left out: probing streams beyond the first video and audio ones (the environment uses
//! `0:v:0` and `0:a:0` too), and decoding a frame to prove decodability (the first action
//! does that, and reports it).

use super::error::{MediaAction, MediaError};
use super::types::VideoInfo;
use ffmpeg_next as ff;
use std::path::{Path, PathBuf};
use std::sync::Once;

/// Initialises FFmpeg once and silences its log (errors come back as values).
pub(crate) fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // Registration is a no-op on FFmpeg >= 4; failure would surface at open time.
        let _ = ff::init();
        ff::util::log::set_level(ff::util::log::Level::Quiet);
    });
}

/// Opens `path` for demuxing (reads the headers and stream info).
pub(crate) fn open_input(path: &Path, action: MediaAction) -> Result<ff::format::context::Input, MediaError> {
    init();
    let unreadable = |reason: String| MediaError::Unreadable { action, path: path.to_path_buf(), reason };
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(MediaError::NotFound { action, path: path.to_path_buf() });
        }
        Err(e) => return Err(unreadable(e.to_string())),
        Ok(m) if !m.is_file() => return Err(unreadable("not a regular file".into())),
        Ok(m) if m.len() == 0 => return Err(unreadable("empty file".into())),
        Ok(_) => {}
    }
    ff::format::input(path).map_err(|e| unreadable(e.to_string()))
}

/// Rational -> f64, `None` for 0/x, x/0 and negatives.
pub(crate) fn ratio(r: ff::Rational) -> Option<f64> {
    (r.numerator() > 0 && r.denominator() > 0).then(|| f64::from(r.numerator()) / f64::from(r.denominator()))
}

/// The video stream the environment reads.
#[derive(Clone)]
pub(crate) struct VideoStream {
    pub index: usize,
    pub time_base: ff::Rational,
    pub params: ff::codec::Parameters,
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub codec: String,
    pub frames: Option<u64>,
    /// End of the stream per the index (start + duration), seconds from the file start.
    pub end_s: Option<f64>,
}

impl VideoStream {
    /// Seconds from the file start -> stream ticks, rounded up (with a tolerance far below a
    /// tick) so that a frame exactly at `t` counts as at-or-after `t`.
    pub fn ticks_ceil(&self, t: f64, file_start: f64) -> i64 {
        let tb = f64::from(self.time_base.numerator()) / f64::from(self.time_base.denominator().max(1));
        ((t + file_start) / tb - 1e-3).ceil() as i64
    }

    /// Stream ticks -> seconds from the file start.
    pub fn seconds(&self, ticks: i64, file_start: f64) -> f64 {
        ticks as f64 * f64::from(self.time_base.numerator()) / f64::from(self.time_base.denominator().max(1))
            - file_start
    }
}

/// The audio stream, when there is one.
#[derive(Clone)]
pub(crate) struct AudioStream {
    pub index: usize,
    pub time_base: ff::Rational,
    pub params: ff::codec::Parameters,
    pub codec: String,
    pub rate: u32,
    pub channels: u16,
}

/// Stream facts of an opened file.
#[derive(Clone)]
pub(crate) struct Streams {
    pub path: PathBuf,
    pub video: VideoStream,
    pub audio: Option<AudioStream>,
    /// Start time of the file, seconds (the zero of every timestamp we show).
    pub start_s: f64,
    pub duration_s: f64,
}

impl Streams {
    /// Reads the facts; fails when the file has no video stream.
    pub fn read(input: &ff::format::context::Input, path: &Path, action: MediaAction) -> Result<Streams, MediaError> {
        let unreadable = |reason: String| MediaError::Unreadable { action, path: path.to_path_buf(), reason };
        let vs = input
            .streams()
            .best(ff::media::Type::Video)
            .ok_or_else(|| MediaError::NoVideoStream { action, path: path.to_path_buf() })?;
        let start_s = input
            .streams()
            .filter(|s| s.start_time() != ff::ffi::AV_NOPTS_VALUE)
            .filter_map(|s| ratio(s.time_base()).map(|tb| s.start_time() as f64 * tb))
            .fold(f64::INFINITY, f64::min);
        let start_s = if start_s.is_finite() { start_s } else { 0.0 };
        let stream_end = |s: &ff::format::stream::Stream| -> Option<f64> {
            let tb = ratio(s.time_base())?;
            let st = if s.start_time() == ff::ffi::AV_NOPTS_VALUE { 0 } else { s.start_time() };
            (s.duration() > 0).then(|| (st + s.duration()) as f64 * tb - start_s)
        };
        let params = vs.parameters();
        let dec = ff::codec::Context::from_parameters(params.clone())
            .and_then(|c| c.decoder().video())
            .map_err(|e| unreadable(format!("video stream {}: {e}", vs.index())))?;
        let codec = params.id().name().to_string();
        let (width, height) = (dec.width(), dec.height());
        if width == 0 || height == 0 {
            return Err(unreadable(format!("video stream {} has no frame size", vs.index())));
        }
        let frames = u64::try_from(vs.frames()).ok().filter(|&n| n > 0);
        let end_s = stream_end(&vs);
        let container = (input.duration() > 0).then(|| input.duration() as f64 / f64::from(ff::ffi::AV_TIME_BASE));
        let duration_s =
            container.or_else(|| input.streams().filter_map(|s| stream_end(&s)).reduce(f64::max)).unwrap_or(0.0);
        let fps = ratio(vs.avg_frame_rate())
            .or_else(|| ratio(vs.rate()))
            .or_else(|| frames.zip(end_s).map(|(n, d)| n as f64 / d.max(1e-9)))
            .unwrap_or(0.0);
        let video = VideoStream {
            index: vs.index(),
            time_base: vs.time_base(),
            params,
            fps,
            width,
            height,
            codec,
            frames,
            end_s,
        };
        let audio = match input.streams().best(ff::media::Type::Audio) {
            None => None,
            Some(a) => {
                let params = a.parameters();
                let dec = ff::codec::Context::from_parameters(params.clone())
                    .and_then(|c| c.decoder().audio())
                    .map_err(|e| unreadable(format!("audio stream {}: {e}", a.index())))?;
                Some(AudioStream {
                    index: a.index(),
                    time_base: a.time_base(),
                    codec: params.id().name().to_string(),
                    params,
                    rate: dec.rate(),
                    channels: dec.channels(),
                })
            }
        };
        Ok(Streams { path: path.to_path_buf(), video, audio, start_s, duration_s })
    }

    pub fn info(&self) -> VideoInfo {
        VideoInfo {
            path: self.path.clone(),
            duration_s: self.duration_s,
            fps: self.video.fps,
            width: self.video.width,
            height: self.video.height,
            has_audio: self.audio.is_some(),
            video_codec: self.video.codec.clone(),
            audio_codec: self.audio.as_ref().map(|a| a.codec.clone()),
            audio_sample_rate: self.audio.as_ref().map(|a| a.rate),
            audio_channels: self.audio.as_ref().map(|a| a.channels),
            frame_count: self.video.frames,
            start_time_s: self.start_s,
            video_duration_s: self.video.end_s,
        }
    }
}

/// Seeks near the end and reads the remaining video packets; fails when the data stops well
/// before the index's end of the video stream, or a read fails or comes back short.
pub(crate) fn check_tail(
    input: &mut ff::format::context::Input,
    s: &Streams,
    action: MediaAction,
) -> Result<(), MediaError> {
    let truncated = |detail: String| MediaError::Truncated { action, path: s.path.clone(), detail };
    let Some(end) = s.video.end_s.or((s.duration_s > 0.0).then_some(s.duration_s)) else {
        return Ok(()); // no index to compare with (e.g. a stream without duration)
    };
    let target = ((end - 2.0).max(0.0) + s.start_s) * f64::from(ff::ffi::AV_TIME_BASE);
    // A failed seek on a file whose index is intact is itself a sign of damage.
    input.seek(target as i64, ..target as i64).map_err(|e| truncated(format!("cannot seek near the end: {e}")))?;
    let mut last_end: Option<f64> = None;
    let mut packet = ff::Packet::empty();
    let mut invalid = 0;
    loop {
        match packet.read(input) {
            Ok(()) => {
                if packet.stream() != s.video.index {
                    continue;
                }
                if packet.is_corrupt() {
                    return Err(truncated("a packet near the end is incomplete".into()));
                }
                if let Some(pts) = packet.pts() {
                    let e = s.video.seconds(pts + packet.duration().max(0), s.start_s);
                    last_end = Some(last_end.map_or(e, |l: f64| l.max(e)));
                }
            }
            Err(ff::Error::Eof) => break,
            Err(ff::Error::InvalidData) if invalid < 16 => invalid += 1,
            Err(e) => return Err(truncated(format!("read error near the end: {e}"))),
        }
    }
    let frame = if s.video.fps > 0.0 { 1.0 / s.video.fps } else { 0.1 };
    match last_end {
        None => Err(truncated(format!("no video data near the end ({end:.3}s)"))),
        Some(l) if l + (2.0 * frame).max(0.5) < end => {
            Err(truncated(format!("video data ends at {l:.3}s but the index says {end:.3}s")))
        }
        Some(_) => Ok(()),
    }
}

/// Probes `path`: stream facts plus the tail check, no decoding.
pub fn probe(path: impl AsRef<Path>) -> Result<VideoInfo, MediaError> {
    let path = path.as_ref();
    let mut input = open_input(path, MediaAction::Probe)?;
    let streams = Streams::read(&input, path, MediaAction::Probe)?;
    check_tail(&mut input, &streams, MediaAction::Probe)?;
    Ok(streams.info())
}
