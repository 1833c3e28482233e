//! Video decoding for `get_frames` and `get_clip` (feature `ffmpeg`): one demuxer per opened
//! video, packets read once, key-frame intervals decoded at most once and in parallel.
//!
//! Seek rule. For a requested time `t` (seconds from the file start) we seek the demuxer to
//! the key frame at or before `t` (`avformat_seek_file(-1, MIN, t, t)`, as `ffmpeg -ss t -i`
//! does) and read packets forward; the frame handed out is the one with the smallest
//! presentation time `>= t`, which is what the CLI's accurate input seeking outputs first
//! (`-ss t -frames:v 1`). Where the CLI subtracts a fixed 3/23 s when the stream has B-frames
//! (its "dts heuristic"), we check instead: if the key frame found shows after `t`, frames of
//! the previous interval may lie between, so we seek again before it. When no frame at or
//! after `t` exists (the video stream ends early) the last frame is used if it is within 3 s
//! of `t` (the reference's `-sseof -0.5 ... -3` fallbacks reach that far), else it is an
//! error naming the time.
//!
//! Work. Requested times are sorted; each seek's first packet names its key-frame interval
//! (GOP), and times in the same interval share one packet run, so no span is decoded twice.
//! Reading stops as soon as no later packet can hold a closer frame (a packet with
//! `dts >= ` the best candidate's pts). Packets are then decoded from memory: distinct GOPs
//! are spread over one lane per core (an OS thread each, with its own single-threaded
//! decoder; largest GOPs first onto the least loaded lane); a lone GOP gets one
//! frame-threaded decoder. Only kept frames are converted to RGB. Non-reference frames that
//! are not wanted are skipped (`skip_frame = NONREF` packet by packet), which the wanted frames
//! never depend on, and a GOP's remaining packets are not sent once its last wanted frame is
//! out. If a wanted frame does not come out with the packet's timestamp, that GOP is decoded
//! again without skipping, choosing by the rule above. Decoders are kept for the next action
//! of the same source; nothing is cached across sources.
//!
//! Left out: hardware decoding and keeping a decoder's position between actions (each
//! action's GOPs start from their key frame).

use super::error::{MediaAction, MediaError};
use super::probe::{Streams, VideoStream};
use super::resize::RgbImage;
use ffmpeg_next as ff;
use std::collections::{HashMap, HashSet};

/// Packets of one key-frame interval and the request times it serves.
pub(crate) struct Group {
    pub packets: Vec<ff::Packet>,
    /// `(output slot, target ticks)`, ascending.
    pub targets: Vec<(usize, i64)>,
    last_dts: i64,
}

fn dts_of(p: &ff::Packet) -> i64 {
    p.dts().or(p.pts()).unwrap_or(i64::MIN)
}

impl Group {
    fn new(key: ff::Packet) -> Group {
        let last_dts = dts_of(&key);
        Group { packets: vec![key], targets: Vec::new(), last_dts }
    }

    fn key_pts(&self) -> Option<i64> {
        self.packets.first().and_then(|p| p.pts())
    }

    /// Smallest packet pts `>= t`.
    pub fn candidate_pts(&self, t: i64) -> Option<i64> {
        self.packets.iter().filter_map(|p| p.pts()).filter(|&p| p >= t).min()
    }

    /// True when no packet still to come can hold a frame closer to `t`.
    fn covers(&self, t: i64) -> bool {
        self.candidate_pts(t).is_some_and(|c| self.last_dts >= c)
    }

    fn push(&mut self, p: ff::Packet) {
        self.last_dts = self.last_dts.max(dts_of(&p));
        self.packets.push(p);
    }
}

/// Which frames a decode pass keeps.
pub(crate) enum Select {
    /// Frames with exactly these pts; unwanted non-reference frames are skipped.
    Exact(HashSet<i64>),
    /// For each target (ascending), the first frame with pts >= it; nothing is skipped.
    FirstAtOrAfter(Vec<i64>),
}

/// What one decode pass over a GOP gave.
#[derive(Default)]
pub(crate) struct Decoded {
    /// Converted frames by pts.
    pub images: HashMap<i64, RgbImage>,
    /// For `FirstAtOrAfter`: target -> chosen pts.
    pub chosen: HashMap<i64, i64>,
    /// The last frame, when asked for.
    pub last: Option<(i64, RgbImage)>,
    pub frames: usize,
    /// Pts of the frames kept (converted and handed to `post`).
    pub kept: HashSet<i64>,
}

/// YUV -> RGB24 at the same size, rebuilt when the input changes.
struct Converter {
    sws: Option<(ff::format::Pixel, u32, u32, ff::software::scaling::Context)>,
    out: ff::frame::Video,
}

impl Converter {
    fn new() -> Converter {
        Converter { sws: None, out: ff::frame::Video::empty() }
    }

    fn rgb(&mut self, f: &ff::frame::Video) -> Result<RgbImage, String> {
        let (fmt, w, h) = (f.format(), f.width(), f.height());
        if !matches!(&self.sws, Some((a, b, c, _)) if (*a, *b, *c) == (fmt, w, h)) {
            let ctx = ff::software::scaling::Context::get(
                fmt,
                w,
                h,
                ff::format::Pixel::RGB24,
                w,
                h,
                ff::software::scaling::Flags::BILINEAR,
            )
            .map_err(|e| format!("no RGB conversion from {fmt:?} {w}x{h}: {e}"))?;
            self.sws = Some((fmt, w, h, ctx));
            self.out = ff::frame::Video::empty();
        }
        let Some((_, _, _, sws)) = self.sws.as_mut() else { return Err("no converter".into()) };
        sws.run(f, &mut self.out).map_err(|e| format!("RGB conversion failed: {e}"))?;
        let (w, h) = (w as usize, h as usize);
        let stride = self.out.stride(0);
        let plane = self.out.data(0);
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            let row = plane.get(y * stride..y * stride + w * 3).ok_or("short RGB plane")?;
            data.extend_from_slice(row);
        }
        Ok(RgbImage { width: w, height: h, data })
    }
}

/// Opens a video decoder; `threads > 1` turns on frame threading.
pub(crate) fn open_decoder(v: &VideoStream, threads: usize) -> Result<ff::decoder::Video, ff::Error> {
    let mut ctx = ff::codec::Context::from_parameters(v.params.clone())?;
    let kind = if threads > 1 { ff::threading::Type::Frame } else { ff::threading::Type::None };
    ctx.set_threading(ff::threading::Config { kind, count: threads, ..Default::default() });
    let mut dec = ctx.decoder();
    dec.set_packet_time_base(v.time_base);
    dec.video()
}

/// Decodes `packets` (one GOP from its key frame) with `dec`, keeping what `select` asks for;
/// `post` runs on each kept RGB frame with its pts (the processor's resize) and gives the image
/// to keep, or `None` when it took the frame elsewhere (resized on another thread).
pub(crate) fn decode_gop(
    dec: &mut ff::decoder::Video,
    packets: &[ff::Packet],
    select: &Select,
    keep_last: bool,
    post: &(dyn Fn(i64, RgbImage) -> Result<Option<RgbImage>, String> + Sync),
) -> Result<Decoded, String> {
    dec.flush();
    let mut conv = Converter::new();
    let mut out = Decoded::default();
    let mut frame = ff::frame::Video::empty();
    let mut last: Option<ff::frame::Video> = None;
    let mut next_target = 0usize;
    let mut rejected = 0usize;
    let mut take = |frame: &ff::frame::Video, out: &mut Decoded, next_target: &mut usize| -> Result<(), String> {
        out.frames += 1;
        let Some(pts) = frame.timestamp().or(frame.pts()) else { return Ok(()) };
        let keep = match select {
            Select::Exact(want) => want.contains(&pts) && !out.kept.contains(&pts),
            Select::FirstAtOrAfter(targets) => {
                let mut hit = false;
                while let Some(&t) = targets.get(*next_target) {
                    if pts < t {
                        break;
                    }
                    out.chosen.insert(t, pts);
                    *next_target += 1;
                    hit = true;
                }
                hit
            }
        };
        if keep {
            let img = conv.rgb(frame)?;
            out.kept.insert(pts);
            if let Some(img) = post(pts, img)? {
                out.images.insert(pts, img);
            }
        }
        Ok(())
    };
    let mut send = |dec: &mut ff::decoder::Video, p: Option<&ff::Packet>| -> Result<(), String> {
        let r = match p {
            Some(p) => {
                if let Select::Exact(want) = select {
                    let needed = p.pts().is_none_or(|pts| want.contains(&pts));
                    dec.skip_frame(if needed { ff::Discard::Default } else { ff::Discard::NonReference });
                }
                dec.send_packet(p)
            }
            None => dec.send_eof(),
        };
        match r {
            Ok(()) | Err(ff::Error::Eof) => Ok(()),
            Err(ff::Error::InvalidData) => {
                rejected += 1;
                Ok(())
            }
            Err(e) => Err(format!("decoder refused a packet: {e}")),
        }
    };
    // Once every wanted frame is out, the rest of the GOP is not decoded (unless the last
    // frame is wanted too).
    let wanted = match select {
        Select::Exact(want) => want.len(),
        Select::FirstAtOrAfter(targets) => targets.len(),
    };
    for p in packets.iter().map(Some).chain([None]) {
        send(dec, p)?;
        while dec.receive_frame(&mut frame).is_ok() {
            take(&frame, &mut out, &mut next_target)?;
            if keep_last {
                last = Some(frame.clone());
            }
        }
        let done = match select {
            Select::Exact(_) => out.kept.len(),
            Select::FirstAtOrAfter(_) => next_target,
        };
        if !keep_last && done >= wanted {
            break;
        }
    }
    if keep_last && let Some(f) = last {
        let pts = f.timestamp().or(f.pts()).unwrap_or(0);
        let img = match out.images.get(&pts) {
            Some(img) => Some(img.clone()),
            None => post(pts, conv.rgb(&f)?)?,
        };
        out.last = img.map(|img| (pts, img));
    }
    if out.frames == 0 && rejected > 0 {
        return Err(format!("the decoder rejected {rejected} packet(s) as invalid data"));
    }
    Ok(out)
}

/// Splits `loads` over at most `lanes` lanes, largest first onto the least loaded lane.
pub(crate) fn balance(loads: &[usize], lanes: usize) -> Vec<Vec<usize>> {
    let lanes = lanes.clamp(1, loads.len().max(1));
    let mut order: Vec<usize> = (0..loads.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(loads[i]));
    let mut out = vec![Vec::new(); lanes];
    let mut total = vec![0usize; lanes];
    for i in order {
        let lane = (0..lanes).min_by_key(|&l| total[l]).unwrap_or(0);
        total[lane] += loads[i];
        out[lane].push(i);
    }
    out.retain(|l| !l.is_empty());
    out
}

/// Keeps decoders between actions of one source.
pub(crate) struct DecoderPool {
    single: Vec<ff::decoder::Video>,
    wide: Option<ff::decoder::Video>,
}

impl DecoderPool {
    pub fn new() -> DecoderPool {
        DecoderPool { single: Vec::new(), wide: None }
    }

    /// Runs `work(decoder, group indices)` for every lane of `lanes` in parallel.
    pub fn run<T: Send>(
        &mut self,
        v: &VideoStream,
        lanes: Vec<Vec<usize>>,
        work: impl Fn(&mut ff::decoder::Video, &[usize]) -> T + Sync,
    ) -> Result<Vec<T>, ff::Error> {
        let threads = rayon::current_num_threads().max(1);
        if lanes.len() <= 1 {
            let mut dec = match self.wide.take() {
                Some(d) => d,
                None => open_decoder(v, threads)?,
            };
            let out = lanes.iter().map(|l| work(&mut dec, l)).collect();
            self.wide = Some(dec);
            return Ok(out);
        }
        let mut jobs = Vec::with_capacity(lanes.len());
        for lane in lanes {
            let dec = match self.single.pop() {
                Some(d) => d,
                None => open_decoder(v, 1)?,
            };
            jobs.push((dec, lane));
        }
        // One OS thread per lane (not rayon's pool, which may be smaller than `lanes`).
        let work = &work;
        let done: Vec<(ff::decoder::Video, T)> = std::thread::scope(|s| {
            let handles: Vec<_> = jobs
                .into_iter()
                .map(|(mut dec, lane)| {
                    s.spawn(move || {
                        let r = work(&mut dec, &lane);
                        (dec, r)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
        });
        let mut out = Vec::with_capacity(done.len());
        for (dec, r) in done {
            self.single.push(dec);
            out.push(r);
        }
        Ok(out)
    }
}

/// How many lanes (threads with their own decoder) independent GOPs are spread over: one per
/// core (more only adds switching; measured).
pub(crate) fn decode_lanes() -> usize {
    rayon::current_num_threads().max(1)
}

/// Reads packets from an opened input, for one stream set.
pub(crate) struct Reader<'a> {
    pub input: &'a mut ff::format::context::Input,
    pub streams: &'a Streams,
    pub action: MediaAction,
}

/// One packet of interest.
pub(crate) enum Pkt {
    Video(ff::Packet),
    Audio(ff::Packet),
}

impl Reader<'_> {
    fn err(&self, at: f64, detail: String) -> MediaError {
        MediaError::Decode { action: self.action, path: self.streams.path.clone(), stream: "container", at, detail }
    }

    /// Next video or audio packet; `None` at the end of the file.
    pub fn next(&mut self, at: f64) -> Result<Option<Pkt>, MediaError> {
        let mut invalid = 0;
        loop {
            let mut p = ff::Packet::empty();
            match p.read(self.input) {
                Ok(()) => {
                    if p.stream() == self.streams.video.index {
                        return Ok(Some(Pkt::Video(p)));
                    }
                    if self.streams.audio.as_ref().is_some_and(|a| a.index == p.stream()) {
                        return Ok(Some(Pkt::Audio(p)));
                    }
                }
                Err(ff::Error::Eof) => return Ok(None),
                Err(ff::Error::InvalidData) if invalid < 64 => invalid += 1,
                Err(e) => return Err(self.err(at, format!("read failed: {e}"))),
            }
        }
    }

    /// Seeks to `t` seconds (key frame at or before it) without looking at packets.
    pub fn seek(&mut self, t: f64) -> Result<(), MediaError> {
        let us = ((t + self.streams.start_s) * f64::from(ff::ffi::AV_TIME_BASE)).floor() as i64;
        if self.input.seek(us, ..us).is_ok() {
            return Ok(());
        }
        // Before the first key frame: let the demuxer pick the nearest one.
        self.input.seek(us, ..).map_err(|e| self.err(t, format!("seek failed: {e}")))
    }

    /// Seeks so that the next video packet is the key frame of the GOP showing `target`
    /// (ticks); returns it with the audio packets read on the way. `None`: no video left.
    pub fn seek_key(&mut self, target: i64) -> Result<Option<(ff::Packet, Vec<ff::Packet>)>, MediaError> {
        let v = &self.streams.video;
        let mut t = v.seconds(target, self.streams.start_s);
        let mut previous: Option<i64> = None;
        for attempt in 0..5 {
            self.seek(t)?;
            let mut audio = Vec::new();
            let key = loop {
                match self.next(t)? {
                    None => return Ok(None),
                    Some(Pkt::Audio(p)) => audio.push(p),
                    Some(Pkt::Video(p)) if p.is_key() => break p,
                    Some(Pkt::Video(_)) => {}
                }
            };
            let kp = key.pts().unwrap_or(dts_of(&key));
            let earlier = kp.min(dts_of(&key));
            if kp <= target || attempt == 4 || previous == Some(kp) || t <= 0.0 {
                return Ok(Some((key, audio)));
            }
            previous = Some(kp);
            t = v.seconds(earlier, self.streams.start_s) - 1e-3;
        }
        Ok(None)
    }

    /// Packet runs for sorted `(slot, target ticks)`: one group per key-frame interval.
    pub fn frame_groups(&mut self, targets: &[(usize, i64)]) -> Result<Vec<Group>, MediaError> {
        let mut groups: Vec<Group> = Vec::new();
        for &(slot, t) in targets {
            if let Some(g) = groups.last_mut()
                && g.covers(t)
            {
                g.targets.push((slot, t));
                continue;
            }
            let at = self.streams.video.seconds(t, self.streams.start_s);
            let Some((key, _)) = self.seek_key(t)? else {
                // Nothing at or after the key: serve it from the last group (fallback).
                match groups.last_mut() {
                    Some(g) => g.targets.push((slot, t)),
                    None => {
                        return Err(MediaError::NoFrame {
                            action: self.action,
                            path: self.streams.path.clone(),
                            at,
                            last: 0.0,
                        });
                    }
                }
                continue;
            };
            let same = groups.last().is_some_and(|g| g.key_pts().is_some() && g.key_pts() == key.pts());
            if !same {
                groups.push(Group::new(key));
            }
            let Some(g) = groups.last_mut() else { continue };
            g.targets.push((slot, t));
            let have = g.last_dts;
            while !g.covers(t) {
                match self.next(at)? {
                    None => break,
                    Some(Pkt::Audio(_)) => {}
                    Some(Pkt::Video(p)) => {
                        if !same || dts_of(&p) > have {
                            g.push(p);
                        }
                    }
                }
            }
        }
        Ok(groups)
    }
}
