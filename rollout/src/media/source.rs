//! [`MediaSource`]: one video opened for one episode, answering `get_frames`, `get_audio`
//! and `get_clip` from the same demuxer and decoders; and [`probe`].
//!
//! Every action checks its arguments against the episode's duration first (see `frames`),
//! then decodes (see `decode` for the seek rule and the parallel GOP decoding, `audio` for
//! resampling). `get_frames` hands out RGB frames at the processor's image size (Pillow
//! bicubic to the `smart_resize` size) unless asked for native frames; `get_clip` hands out
//! the processor's 2-fps frames at its video size (torchvision bicubic), already patchified
//! (each temporal pair is written as soon as its two frames are resized, then dropped), plus
//! 16 kHz audio.
//!
//! Without the `ffmpeg` feature this file still compiles: `open` and `probe` return
//! [`MediaError::Unsupported`], so no source can exist, and the pure parts of `media` work.
//!
//! Left out: remote URLs (the data layer resolves local paths) and sources that change
//! resolution mid-stream beyond what the converter handles frame by frame.

use super::clip::{ImageSizing, VideoSampling};
use super::error::{MediaAction, MediaError};
use super::frames::FrameRequest;
use super::types::{AudioClip, Clip, Frames, VideoInfo};
use std::path::Path;

#[cfg(feature = "ffmpeg")]
use super::{
    audio,
    clip::reference_clip_audio_samples,
    decode,
    frames::Span,
    frames::clamp_frame_time,
    inputs::fit_image,
    patches::{PATCH_DIM, PairFiller, Patches, video_grid},
    probe as pr,
    resize::RgbImage,
    resize::resize_torch_bicubic_aa,
    types::Frame,
};
#[cfg(feature = "ffmpeg")]
use std::collections::HashMap;

/// An opened video (one per episode; `Send`, not shared between threads).
pub struct MediaSource {
    info: VideoInfo,
    duration: f64,
    #[cfg(feature = "ffmpeg")]
    inner: Inner,
}

#[cfg(feature = "ffmpeg")]
struct Inner {
    input: ffmpeg_next::format::context::Input,
    streams: pr::Streams,
    pool: decode::DecoderPool,
    /// Why the tail check failed, if it did (actions past the damage fail with it).
    damaged: Option<String>,
}

/// Probes a video: container and stream facts plus a check that its end is readable; no
/// frame is decoded.
pub fn probe(path: impl AsRef<Path>) -> Result<VideoInfo, MediaError> {
    #[cfg(feature = "ffmpeg")]
    {
        pr::probe(path)
    }
    #[cfg(not(feature = "ffmpeg"))]
    {
        let _ = path;
        Err(MediaError::Unsupported { action: MediaAction::Probe })
    }
}

impl MediaSource {
    /// Opens `path` (fails when it is missing, unreadable or has no video stream). A file
    /// whose tail is damaged still opens; actions reaching the damage fail.
    pub fn open(path: impl AsRef<Path>) -> Result<MediaSource, MediaError> {
        #[cfg(feature = "ffmpeg")]
        {
            let path = path.as_ref();
            let mut input = pr::open_input(path, MediaAction::Probe)?;
            let streams = pr::Streams::read(&input, path, MediaAction::Probe)?;
            let damaged = pr::check_tail(&mut input, &streams, MediaAction::Probe).err().map(|e| e.to_string());
            let info = streams.info();
            Ok(MediaSource {
                duration: info.duration_s,
                info,
                inner: Inner { input, streams, pool: decode::DecoderPool::new(), damaged },
            })
        }
        #[cfg(not(feature = "ffmpeg"))]
        {
            let _ = path;
            Err(MediaError::Unsupported { action: MediaAction::Probe })
        }
    }

    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    /// The duration requests are checked and clamped against.
    pub fn duration(&self) -> f64 {
        self.duration
    }

    /// Uses the dataset's `duration_seconds` instead of the probed duration, as the reference
    /// does (non-finite or negative values are ignored).
    pub fn set_duration(&mut self, seconds: f64) {
        if seconds.is_finite() && seconds >= 0.0 {
            self.duration = seconds;
        }
    }

    /// `get_frames`: `num` frames evenly spaced over `[start, end]`, at the processor's image
    /// size for `sizing` (native size when `None`).
    pub fn frames(&mut self, req: &FrameRequest, sizing: Option<&ImageSizing>) -> Result<Frames, MediaError> {
        let labels = req.timestamps(self.duration)?;
        self.frames_at(&labels, sizing)
    }

    /// `get_frames` at the labels [`FrameRequest::timestamps`] gives (each clamped to the
    /// decodable range, as `frames` does). Each label's frame depends on that label alone, not
    /// on the others asked for with it, which is what lets `media::cache` serve labels one by one.
    pub fn frames_at(&mut self, labels: &[f64], sizing: Option<&ImageSizing>) -> Result<Frames, MediaError> {
        #[cfg(feature = "ffmpeg")]
        {
            self.decode_frames(labels, sizing)
        }
        #[cfg(not(feature = "ffmpeg"))]
        {
            let _ = (labels, sizing);
            Err(MediaError::Unsupported { action: MediaAction::Frames })
        }
    }

    /// `get_audio`: `[start, end]` (end clamped to `duration - 0.2`) as 16 kHz mono.
    pub fn audio(&mut self, start: f64, end: f64) -> Result<AudioClip, MediaError> {
        if !self.info.has_audio {
            return Err(MediaError::NoAudioStream { action: MediaAction::Audio, path: self.info.path.clone() });
        }
        #[cfg(feature = "ffmpeg")]
        {
            let span = Span::new(MediaAction::Audio, start, end, self.duration)?;
            self.decode_audio(span)
        }
        #[cfg(not(feature = "ffmpeg"))]
        {
            let _ = (start, end);
            Err(MediaError::Unsupported { action: MediaAction::Audio })
        }
    }

    /// A whole file as the video processor reads a video file: its frames over the probed
    /// duration (no end margin: the file is already the clip) and, when it has one, its audio.
    pub fn whole_file_clip(&mut self, sampling: &VideoSampling) -> Result<Clip, MediaError> {
        #[cfg(feature = "ffmpeg")]
        {
            let d = self.info.duration_s;
            if !(d.is_finite() && d > 0.0) {
                let reason = format!("the file reports no duration ({d})");
                return Err(MediaError::Unreadable { action: MediaAction::Clip, path: self.info.path.clone(), reason });
            }
            self.decode_clip(Span { start: 0.0, end: d, clamped_end: d }, sampling)
        }
        #[cfg(not(feature = "ffmpeg"))]
        {
            let _ = sampling;
            Err(MediaError::Unsupported { action: MediaAction::Clip })
        }
    }

    /// `get_clip`: the processor's frames of `[start, end]` (end clamped to `duration - 0.2`)
    /// and, when the video has audio, the clip's 16 kHz audio.
    pub fn clip(&mut self, start: f64, end: f64, sampling: &VideoSampling) -> Result<Clip, MediaError> {
        #[cfg(feature = "ffmpeg")]
        {
            let span = Span::new(MediaAction::Clip, start, end, self.duration)?;
            self.decode_clip(span, sampling)
        }
        #[cfg(not(feature = "ffmpeg"))]
        {
            let _ = (start, end, sampling);
            Err(MediaError::Unsupported { action: MediaAction::Clip })
        }
    }
}

#[cfg(feature = "ffmpeg")]
fn video_err(action: MediaAction, path: &Path, at: f64) -> impl Fn(String) -> MediaError + '_ {
    move |detail| MediaError::Decode { action, path: path.to_path_buf(), stream: "video", at, detail }
}

#[cfg(feature = "ffmpeg")]
impl MediaSource {
    fn no_frame(&self, action: MediaAction, at: f64, last: f64) -> MediaError {
        match &self.inner.damaged {
            Some(detail) => MediaError::Truncated { action, path: self.info.path.clone(), detail: detail.clone() },
            None => MediaError::NoFrame { action, path: self.info.path.clone(), at, last },
        }
    }

    fn decode_frames(&mut self, labels: &[f64], sizing: Option<&ImageSizing>) -> Result<Frames, MediaError> {
        use decode::{Select, balance, decode_gop};
        use std::collections::HashSet;
        const FALLBACK_S: f64 = 3.0;
        let action = MediaAction::Frames;
        let (start, d) = (self.inner.streams.start_s, self.duration);
        let path = self.info.path.clone();
        let clamped: Vec<f64> = labels.iter().map(|&t| clamp_frame_time(t, d)).collect();
        let v = self.inner.streams.video.clone();
        let mut targets: Vec<(usize, i64)> =
            clamped.iter().enumerate().map(|(i, &t)| (i, v.ticks_ceil(t, start))).collect();
        targets.sort_by_key(|&(i, t)| (t, i));
        let first_at = clamped.iter().copied().fold(f64::INFINITY, f64::min);
        let groups = {
            let inner = &mut self.inner;
            let mut reader = decode::Reader { input: &mut inner.input, streams: &inner.streams, action };
            match reader.frame_groups(&targets) {
                Err(MediaError::NoFrame { at, .. }) => return Err(self.no_frame(action, at, 0.0)),
                other => other?,
            }
        };
        let plans: Vec<(Select, bool)> = groups
            .iter()
            .map(|g| {
                let mut want = HashSet::new();
                let mut fallback = false;
                for &(_, t) in &g.targets {
                    match g.candidate_pts(t) {
                        Some(c) => {
                            want.insert(c);
                        }
                        None => fallback = true,
                    }
                }
                (Select::Exact(want), fallback)
            })
            .collect();
        let post = |_pts: i64, img: RgbImage| -> Result<Option<RgbImage>, String> {
            match sizing {
                Some(s) => Ok(Some(fit_image(&img, s).map_err(|e| e.to_string())?.unwrap_or(img))),
                None => Ok(Some(img)),
            }
        };
        let loads: Vec<usize> = groups.iter().map(|g| g.packets.len()).collect();
        let lanes = balance(&loads, decode::decode_lanes());
        let err = video_err(action, &path, first_at);
        let runs = self
            .inner
            .pool
            .run(&v, lanes, |dec, gs| {
                gs.iter()
                    .map(|&g| (g, decode_gop(dec, &groups[g].packets, &plans[g].0, plans[g].1, &post)))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| err(format!("cannot open the {} decoder: {e}", v.codec)))?;
        let mut decoded: Vec<Option<decode::Decoded>> = (0..groups.len()).map(|_| None).collect();
        for (g, r) in runs.into_iter().flatten() {
            decoded[g] = Some(r.map_err(&err)?);
        }
        let mut frames: Vec<Option<Frame>> = vec![None; labels.len()];
        let mut frames_decoded = 0;
        for (g, group) in groups.iter().enumerate() {
            let Some(mut out) = decoded[g].take() else { continue };
            let complete =
                group.targets.iter().all(|&(_, t)| group.candidate_pts(t).is_none_or(|c| out.images.contains_key(&c)));
            frames_decoded += out.frames;
            if !complete {
                // Frame timestamps differ from the packets': decode again, choosing by rule.
                let ts: Vec<i64> = group.targets.iter().map(|&(_, t)| t).collect();
                let select = Select::FirstAtOrAfter(ts);
                let again = self
                    .inner
                    .pool
                    .run(&v, vec![vec![g]], |dec, _| decode_gop(dec, &group.packets, &select, true, &post))
                    .map_err(|e| err(format!("cannot open the decoder: {e}")))?;
                out = again.into_iter().next().ok_or_else(|| err("no decode result".into()))?.map_err(&err)?;
                frames_decoded += out.frames;
            }
            for &(slot, t) in &group.targets {
                let pts = group.candidate_pts(t).filter(|c| out.images.contains_key(c)).or(out.chosen.get(&t).copied());
                let hit = pts.and_then(|p| out.images.get(&p).map(|img| (p, img.clone())));
                let (pts, image) = match (hit, &out.last) {
                    (Some(h), _) => h,
                    (None, Some((lp, img))) if clamped[slot] - v.seconds(*lp, start) <= FALLBACK_S => {
                        (*lp, img.clone())
                    }
                    (None, last) => {
                        let last_s = last.as_ref().map_or(0.0, |(lp, _)| v.seconds(*lp, start));
                        return Err(self.no_frame(action, clamped[slot], last_s));
                    }
                };
                frames[slot] = Some(Frame { requested_s: labels[slot], pts_s: v.seconds(pts, start), image });
            }
        }
        let frames: Vec<Frame> = frames
            .into_iter()
            .enumerate()
            .map(|(i, f)| f.ok_or_else(|| self.no_frame(action, clamped[i], 0.0)))
            .collect::<Result<_, _>>()?;
        Ok(Frames { frames, gops_decoded: groups.len(), frames_decoded })
    }

    /// Reads the packets of `[s, e)`: video from the key frame before `s` (when `video`),
    /// audio from half a second before `s`.
    fn read_span(
        &mut self,
        action: MediaAction,
        s: f64,
        e: f64,
        video: bool,
    ) -> Result<(Vec<ffmpeg_next::Packet>, Vec<ffmpeg_next::Packet>), MediaError> {
        use decode::Pkt;
        const AUDIO_LEAD_S: f64 = 0.5;
        const GIVE_UP_S: f64 = 10.0;
        let inner = &mut self.inner;
        let start = inner.streams.start_s;
        let v = inner.streams.video.clone();
        let atb = inner.streams.audio.as_ref().and_then(|a| pr::ratio(a.time_base));
        let e_ticks = v.ticks_ceil(e, start);
        let mut reader = decode::Reader { input: &mut inner.input, streams: &inner.streams, action };
        let (mut vp, mut ap) = (Vec::new(), Vec::new());
        let audio_time = |p: &ffmpeg_next::Packet| p.pts().zip(atb).map(|(t, tb)| t as f64 * tb - start);
        let keep_audio = |p: &ffmpeg_next::Packet| {
            audio_time(p).is_some_and(|t| t + p.duration().max(0) as f64 * atb.unwrap_or(0.0) >= s - AUDIO_LEAD_S)
        };
        if video {
            match reader.seek_key(v.ticks_ceil(s, start))? {
                None => return Err(MediaError::NoFrame { action, path: self.info.path.clone(), at: s, last: 0.0 }),
                Some((key, audio)) => {
                    vp.push(key);
                    ap.extend(audio.into_iter().filter(&keep_audio));
                }
            }
        } else {
            reader.seek(s)?;
        }
        let (mut video_done, mut audio_done) = (!video, atb.is_none());
        while !(video_done && audio_done) {
            match reader.next(s)? {
                None => break,
                Some(Pkt::Video(p)) => {
                    let dts = p.dts().or(p.pts()).unwrap_or(i64::MIN);
                    if dts >= e_ticks {
                        video_done = true;
                        if v.seconds(dts, start) > e + GIVE_UP_S {
                            break; // the audio stream ended early
                        }
                    } else if video {
                        vp.push(p);
                    }
                }
                Some(Pkt::Audio(p)) => match audio_time(&p) {
                    Some(t) if t >= e => audio_done = true,
                    _ if keep_audio(&p) => ap.push(p),
                    _ => {}
                },
            }
        }
        Ok((vp, ap))
    }

    fn decode_audio(&mut self, span: Span) -> Result<AudioClip, MediaError> {
        let action = MediaAction::Audio;
        let (s, e) = (span.start, span.clamped_end);
        let (_, packets) = self.read_span(action, s, e, false)?;
        let Some(a) = self.inner.streams.audio.as_ref() else {
            return Err(MediaError::NoAudioStream { action, path: self.info.path.clone() });
        };
        let samples = audio::decode_span(a, &packets, self.inner.streams.start_s, s, e, &self.info.path, action)?;
        Ok(AudioClip { samples, sample_rate: super::mel::SAMPLE_RATE, start_s: s, end_s: e })
    }

    fn decode_clip(&mut self, span: Span, sampling: &VideoSampling) -> Result<Clip, MediaError> {
        use decode::{Select, balance, decode_gop};
        let action = MediaAction::Clip;
        let (s, e) = (span.start, span.clamped_end);
        let start = self.inner.streams.start_s;
        let path = self.info.path.clone();
        let err = video_err(action, &path, s);
        let (vp, ap) = self.read_span(action, s, e, true)?;
        let v = self.inner.streams.video.clone();
        let (s_t, e_t) = (v.ticks_ceil(s, start), v.ticks_ceil(e, start));
        if vp.iter().any(|p| p.pts().is_none()) {
            return Err(err("video packets without timestamps are not supported".into()));
        }
        let mut pts_in: Vec<i64> = vp.iter().filter_map(|p| p.pts()).filter(|&p| p >= s_t && p < e_t).collect();
        pts_in.sort_unstable();
        pts_in.dedup();
        let total = pts_in.len();
        let Some(n) = sampling.nframes(total, v.fps) else {
            if total == 0 {
                return Err(self.no_frame(action, s, 0.0));
            }
            return Err(err(format!("the clip has {total} frame(s); the processor needs at least 2")));
        };
        let selected: Vec<i64> = VideoSampling::indices(total, n).into_iter().map(|i| pts_in[i]).collect();
        let (fh, fw) = sampling.frame_size(v.height as usize, v.width as usize, n)?;
        // GOPs: runs of packets from one key frame to the next, kept when they hold a wanted frame.
        let mut gops: Vec<Vec<ffmpeg_next::Packet>> = Vec::new();
        for p in vp {
            match gops.last_mut() {
                Some(g) if !p.is_key() => g.push(p),
                _ => gops.push(vec![p]),
            }
        }
        let wanted: std::collections::HashSet<i64> = selected.iter().copied().collect();
        gops.retain(|g| g.iter().any(|p| p.pts().is_some_and(|t| wanted.contains(&t))));
        let plans: Vec<Select> = gops
            .iter()
            .map(|g| Select::Exact(g.iter().filter_map(|p| p.pts()).filter(|t| wanted.contains(t)).collect()))
            .collect();
        let lanes = balance(&gops.iter().map(Vec::len).collect::<Vec<_>>(), decode::decode_lanes());
        let audio_stream = self.inner.streams.audio.clone();
        let pool = &mut self.inner.pool;
        // Each kept frame is resized and written into its temporal patch's rows as soon as it is
        // decoded; a pair's frames are dropped once both are in. Resizes run on rayon's threads
        // while the lanes decode on, so that a lane with more kept frames does not finish last;
        // past a few queued frames a lane resizes itself (bounded memory).
        let mut slots: HashMap<i64, Vec<usize>> = HashMap::new();
        for (i, &p) in selected.iter().enumerate() {
            slots.entry(p).or_default().push(i);
        }
        let grid = video_grid(n, (fh, fw));
        let mut codes = vec![0u8; grid.iter().product::<usize>() * PATCH_DIM];
        let filler = PairFiller::new(&mut codes, n, (fh, fw));
        let failures = std::sync::Mutex::new(Vec::new());
        let queued = std::sync::atomic::AtomicUsize::new(0);
        let max_queued = 2 * rayon::current_num_threads().max(1);
        let (gops_r, plans_r, queued_r, filler_r, failures_r, slots_r, v_own, apath) =
            (&gops, &plans, &queued, &filler, &failures, &slots, v.clone(), path.clone());
        let deliver = move |pts: i64, img: RgbImage| -> Result<(), String> {
            let resized = resize_torch_bicubic_aa(&img, fw, fh);
            drop(img);
            let at = slots_r.get(&pts).map(Vec::as_slice).unwrap_or_default();
            let Some((&last, rest)) = at.split_last() else { return Ok(()) };
            for &slot in rest {
                filler_r.put(slot, resized.clone()).map_err(|e| e.to_string())?;
            }
            filler_r.put(last, resized).map_err(|e| e.to_string())
        };
        let (video_runs, audio) = rayon::join(
            move || {
                rayon::scope(move |sc| {
                    let post = |pts: i64, img: RgbImage| -> Result<Option<RgbImage>, String> {
                        use std::sync::atomic::Ordering::SeqCst;
                        if queued_r.fetch_add(1, SeqCst) >= max_queued {
                            queued_r.fetch_sub(1, SeqCst);
                            deliver(pts, img)?;
                            return Ok(None);
                        }
                        sc.spawn(move |_| {
                            if let Err(e) = deliver(pts, img)
                                && let Ok(mut f) = failures_r.lock()
                            {
                                f.push(e);
                            }
                            queued_r.fetch_sub(1, SeqCst);
                        });
                        Ok(None)
                    };
                    pool.run(&v_own, lanes, |dec, gs| {
                        gs.iter().map(|&g| decode_gop(dec, &gops_r[g], &plans_r[g], false, &post)).collect::<Vec<_>>()
                    })
                })
            },
            move || audio_stream.map(|a| audio::decode_span(&a, &ap, start, s, e, &apath, action)),
        );
        let runs = video_runs.map_err(|e| err(format!("cannot open the {} decoder: {e}", v.codec)))?;
        let mut frames_decoded = 0;
        for r in runs.into_iter().flatten() {
            frames_decoded += r.map_err(&err)?.frames;
        }
        if let Some(first) = failures.into_inner().map_err(|_| err("a resize failed".into()))?.into_iter().next() {
            return Err(err(first));
        }
        if let Some(slot) = filler.missing() {
            let at = selected.get(slot).map_or(s, |&p| v.seconds(p, start));
            return Err(err(format!("frame at {at:.3}s did not decode")));
        }
        drop(filler);
        let audio = match audio {
            None => None,
            Some(samples) => {
                let mut samples = samples?;
                if sampling.pad_audio_like_reference {
                    let want = reference_clip_audio_samples(e - s);
                    if want > samples.len() {
                        samples.resize(want, 0.0);
                    }
                }
                Some(AudioClip { samples, sample_rate: super::mel::SAMPLE_RATE, start_s: s, end_s: e })
            }
        };
        Ok(Clip {
            start_s: s,
            end_s: e,
            timestamps: selected.iter().map(|&p| v.seconds(p, start)).collect(),
            video: Patches { codes: std::sync::Arc::new(codes), grid_thw: grid },
            audio,
            source_frames: total,
            sample_fps: VideoSampling::sample_fps(n, total, v.fps),
            second_per_grid: sampling.second_per_grid(),
            gops_decoded: gops.len(),
            frames_decoded,
        })
    }
}
