//! [`VideoEnv`]: the episode's [`MediaEnv`] on a real video, through `media::MediaSource`
//! (in-process decoding) and `media::inputs` (pixel patches, log-mel features, placeholder
//! counts).
//!
//! * `get_frames` -> one image per timestamp at the processor's image size; each part's layout
//!   is its `image_grid_thw` and its inputs hold that image's pixel rows only.
//! * `get_audio` -> 16 kHz mono, `audio_seconds` = the decoded length.
//! * `get_clip` -> the processor's 2-fps frames; with `use_audio` (the sample's `has_audio`,
//!   as the reference's `use_audio_in_video`) and an audio track, the clip's audio is
//!   interleaved (`VideoWithAudio`), else a silent video. `video_seconds` is the source frames
//!   in the range over the frame rate (the reference ffprobes its re-encoded file), so a video
//!   shorter than its dataset duration fails the sanity check as in the reference.
//!
//! [`VideoEnv::open_shared`] serves the same answers through a `media::MediaCache`, shared
//! with the other episodes on the same video (a GRPO group's identical overviews are decoded
//! once); [`VideoEnv::open`] decodes on its own.
//!
//! Checks and clamps use the dataset's duration (`MediaSource::set_duration`), as the
//! reference does. Every media error becomes a [`MediaFailure`] (reported by the episode as
//! the action's `FFMPEG_*_FAIL`): the episode validated the arguments before asking.
//!
//! [`media_file_item`] builds the same items from the media files an SFT line references (a frame
//! image, a WAV file, a clip file), so SFT rows and rollout turns carry identical inputs.
//!
//! Left out: writing media files (the reference's JPEG/WAV/MP4 temp files); see
//! `media::output` for files meant for people.

use super::media::{MediaEnv, MediaFailure, MediaItem, Observation};
use crate::chat;
use crate::data::PartKind;
use crate::media::cache::sampling_key;
use crate::media::{
    AudioClip, Clip, Frame, FrameRequest, Frames, ImageSizing, MediaAction, MediaCache, MediaError, MediaSource,
    ModelInputs, PixelRows, SharedVideo, VideoInfo, VideoSampling, VisionInputs, files, inputs::audio_inputs,
    inputs::clip_inputs, inputs::frames_inputs, patches::PATCH_DIM,
};
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Where an environment's media comes from.
enum Source {
    /// Its own decoder (one request at a time).
    Private(Box<Mutex<MediaSource>>),
    /// A video shared with the other episodes on it, through a [`MediaCache`].
    Shared(Arc<SharedVideo>),
}

/// One opened video, shareable with the driver's extraction threads.
pub struct VideoEnv {
    source: Source,
    info: VideoInfo,
    use_audio: bool,
    pub sizing: ImageSizing,
    pub sampling: VideoSampling,
}

impl std::fmt::Debug for VideoEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoEnv").field("info", &self.info).field("use_audio", &self.use_audio).finish_non_exhaustive()
    }
}

impl VideoEnv {
    /// Opens `path`; `duration` (the dataset's) replaces the probed duration for checks and
    /// clamps; `use_audio` feeds clip audio to the model.
    pub fn open(path: &Path, duration: Option<f64>, use_audio: bool) -> Result<VideoEnv, MediaError> {
        let mut source = MediaSource::open(path)?;
        if let Some(d) = duration {
            source.set_duration(d);
        }
        let info = source.info().clone();
        Ok(VideoEnv::with(Source::Private(Box::new(Mutex::new(source))), info, use_audio))
    }

    /// Like [`open`](Self::open), but sharing the video and what is decoded from it with the
    /// other episodes `cache` serves on the same file (see `media::cache`).
    pub fn open_shared(
        cache: &Arc<MediaCache>,
        path: &Path,
        duration: Option<f64>,
        use_audio: bool,
    ) -> Result<VideoEnv, MediaError> {
        let video = cache.open(path, duration)?;
        let info = video.info().clone();
        Ok(VideoEnv::with(Source::Shared(video), info, use_audio))
    }

    fn with(source: Source, info: VideoInfo, use_audio: bool) -> VideoEnv {
        VideoEnv { source, info, use_audio, sizing: ImageSizing::default(), sampling: VideoSampling::default() }
    }

    /// The probed facts of the video.
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    fn decode_frames(&self, request: &FrameRequest) -> Result<Frames, MediaError> {
        match &self.source {
            Source::Private(m) => lock(m).frames(request, Some(&self.sizing)),
            Source::Shared(v) => v.frames(request, Some(&self.sizing)),
        }
    }

    /// `get_audio` as the model's inputs; shared: the inputs themselves are cached (the
    /// log-mel features are computed once per span).
    fn audio_observation(&self, start: f64, end: f64) -> Result<Observation, MediaError> {
        match &self.source {
            Source::Private(m) => Ok(audio_observation(&lock(m).audio(start, end)?)),
            Source::Shared(v) => {
                let decode = |s: &mut MediaSource| s.audio(start, end).map(|a| audio_observation(&a));
                Ok((*v.memo("audio observation", start, end, [0; 8], observation_bytes, decode)?).clone())
            }
        }
    }

    /// `get_clip` as the model's inputs (cached like `audio_observation` when shared).
    fn clip_observation(&self, start: f64, end: f64) -> Result<Observation, MediaError> {
        let sampling = self.sampling;
        let observe = |s: &mut MediaSource| s.clip(start, end, &sampling).and_then(|c| self.observe_clip(c));
        match &self.source {
            Source::Private(m) => observe(&mut lock(m)),
            Source::Shared(v) => {
                let mut settings = sampling_key(&sampling);
                settings[7] = u64::from(self.use_audio);
                Ok((*v.memo("clip observation", start, end, settings, observation_bytes, observe)?).clone())
            }
        }
    }

    fn observe_clip(&self, mut clip: Clip) -> Result<Observation, MediaError> {
        if !self.use_audio {
            clip.audio = None;
        }
        let item = clip_item(&clip)?;
        let audio_seconds = clip.audio.as_ref().map(|a| a.seconds());
        // What ffprobe would say of the reference's re-encoded clip: the source frames it holds.
        let video_seconds = (clip.source_frames > 0).then(|| {
            if self.info.fps > 0.0 { clip.source_frames as f64 / self.info.fps } else { clip.end_s - clip.start_s }
        });
        Ok(Observation { items: vec![item], video_seconds, audio_seconds })
    }
}

fn audio_observation(clip: &AudioClip) -> Observation {
    Observation { items: vec![audio_item(clip)], video_seconds: None, audio_seconds: Some(clip.seconds()) }
}

/// Bytes of an observation's model inputs (pixel rows and log-mel features).
fn observation_bytes(o: &Observation) -> usize {
    let vision = |v: &Option<VisionInputs>| {
        v.as_ref().map_or(0, |v| match &v.pixels {
            PixelRows::Codes(c) => c.len(),
            PixelRows::Values(x) => x.len() * 4,
        })
    };
    o.items
        .iter()
        .filter_map(|it| it.inputs.as_deref())
        .map(|i| vision(&i.images) + vision(&i.video) + i.audio.as_ref().map_or(0, |a| a.data.len() * 4))
        .sum()
}

fn lock(m: &Mutex<MediaSource>) -> std::sync::MutexGuard<'_, MediaSource> {
    // A request that panicked mid-decode leaves nothing half-updated that the next one reads:
    // every action seeks afresh.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn failure(e: MediaError) -> MediaFailure {
    MediaFailure::new(e.to_string())
}

impl MediaEnv for VideoEnv {
    fn frames(&self, start: f64, end: f64, timestamps: &[f64]) -> Result<Observation, MediaFailure> {
        let num = i64::try_from(timestamps.len()).unwrap_or(i64::MAX);
        let frames = self.decode_frames(&FrameRequest::new(start, end, num)).map_err(|e| {
            // The reference reports the first timestamp that failed (`Bad frame {t:.2f}s`).
            let at = match &e {
                MediaError::NoFrame { at, .. } | MediaError::Decode { at, .. } => Some(*at),
                _ => timestamps.first().copied(),
            };
            MediaFailure { reason: e.to_string(), at }
        })?;
        let inputs = frames_inputs(&frames, &self.sizing).map_err(failure)?;
        Ok(Observation { items: image_items(inputs), video_seconds: None, audio_seconds: None })
    }

    fn audio(&self, start: f64, end: f64) -> Result<Observation, MediaFailure> {
        self.audio_observation(start, end).map_err(failure)
    }

    fn clip(&self, start: f64, end: f64) -> Result<Observation, MediaFailure> {
        self.clip_observation(start, end).map_err(failure)
    }
}

/// One item per image of a `frames_inputs` result, each with its own image's rows, so every
/// part carries exactly the inputs its placeholder stands for.
pub fn image_items(inputs: ModelInputs) -> Vec<MediaItem> {
    let images = inputs.images.unwrap_or_default();
    let mut items = Vec::with_capacity(images.grid_thw.len());
    let mut row = 0usize;
    for grid_thw in images.grid_thw {
        let rows: usize = grid_thw.iter().product();
        let (a, b) = (row * PATCH_DIM, (row + rows) * PATCH_DIM);
        let pixels = images.pixels.slice(a, b).unwrap_or_default();
        row += rows;
        let one =
            ModelInputs { images: Some(VisionInputs { pixels, grid_thw: vec![grid_thw] }), ..ModelInputs::default() };
        items.push(MediaItem { layout: chat::Part::Image { grid_thw }, inputs: Some(Arc::new(one)) });
    }
    items
}

/// The item of an audio clip: its log-mel features.
pub fn audio_item(clip: &AudioClip) -> MediaItem {
    let inputs = audio_inputs(clip);
    let tokens = inputs.audio_tokens();
    MediaItem { layout: chat::Part::Audio { tokens }, inputs: Some(Arc::new(inputs)) }
}

/// The item of a clip: its video rows, interleaved with its audio when it carries audio.
pub fn clip_item(clip: &Clip) -> Result<MediaItem, MediaError> {
    let inputs = clip_inputs(clip);
    let grid_thw = inputs.video.as_ref().and_then(|v| v.grid_thw.first().copied()).ok_or(MediaError::EmptyClip)?;
    let layout = match &clip.audio {
        Some(_) => chat::Part::VideoWithAudio {
            grid_thw,
            second_per_grid: clip.second_per_grid,
            audio_tokens: inputs.audio_tokens(),
        },
        None => chat::Part::Video { grid_thw },
    };
    Ok(MediaItem { layout, inputs: Some(Arc::new(inputs)) })
}

/// The item of a media file an SFT line references (`image`, `audio` or `video` part), decoded
/// and preprocessed exactly as the environment's media of the same kind (see `media::files`).
pub fn media_file_item(
    kind: PartKind,
    path: &Path,
    sizing: &ImageSizing,
    sampling: &VideoSampling,
) -> Result<MediaItem, MediaError> {
    match kind {
        PartKind::Image => {
            let image = files::read_image(path)?;
            let frames = Frames {
                frames: vec![Frame { requested_s: 0.0, pts_s: 0.0, image }],
                gops_decoded: 0,
                frames_decoded: 1,
            };
            let mut items = image_items(frames_inputs(&frames, sizing)?);
            items.pop().ok_or_else(|| MediaError::BadImage { width: 0, height: 0, reason: "no image rows".into() })
        }
        PartKind::Audio => Ok(audio_item(&files::read_wav(path)?)),
        PartKind::Video => clip_item(&files::read_clip(path, sampling)?),
        PartKind::Text => Err(MediaError::Unreadable {
            action: MediaAction::Probe,
            path: path.to_path_buf(),
            reason: "a text part is not a media file".into(),
        }),
    }
}
