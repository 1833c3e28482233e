//! [`MediaCache`]: decoded media shared by every episode of a rollout that uses the same video.
//!
//! A GRPO group runs several episodes of one prompt on one video, and their requests overlap:
//! the opening overview is often the same `get_frames` call in every episode, and later turns
//! revisit the same moments. Without sharing, each request decodes from the preceding key frame
//! again. Here every episode on a video holds one [`SharedVideo`] (one demuxer and decoder set,
//! one request at a time) and the cache keeps what was decoded:
//!
//! * `get_frames`: one entry per frame, keyed by (label, image sizing), holding the frame at the
//!   processor's size (what the model's rows are made from). A frame depends on its label
//!   alone (`MediaSource::frames_at`), so a request is served label by label and a cached frame
//!   is the very bytes a fresh decode gives.
//! * `get_audio` and `get_clip`: one entry per request, keyed by (start, end) and, for clips,
//!   the sampling settings.
//!
//! Requests that arrive together are coalesced: a frame label another request is already
//! waiting for or decoding is not decoded again, and whoever takes the video's decoder next
//! decodes every label queued for it so far in one pass (`MediaSource::frames_at` decodes each
//! key-frame interval once), so overlapping requests share their GOPs. An audio or clip request
//! identical to one being decoded waits for that one.
//!
//! Memory is bounded by `budget` bytes (pixel and sample bytes): least recently used entries go
//! first; an entry a waiting request still has to read is kept until it is read, so the bound
//! can be exceeded by what requests in flight hold. A video's entries are dropped when the last
//! episode holding it ends ([`SharedVideo`]'s drop). A failed decode caches nothing: each
//! request that wanted it decodes its own request again, uncached, so it gets exactly the
//! result and error an uncached environment gives.
//!
//! Left out: caching across rollout batches' videos once their episodes end (a video's entries
//! live exactly as long as its episodes), and caching source-resolution frames (a frame is kept
//! at the one size the episodes ask for; a clip at its pixel budget).

use super::clip::{ImageSizing, VideoSampling};
use super::error::MediaError;
use super::source::MediaSource;
use super::types::{AudioClip, Clip, Frame, Frames, VideoInfo};
use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, Weak};

/// Bookkeeping bytes counted per entry on top of its pixels or samples.
const ENTRY_OVERHEAD: usize = 128;

/// What a cache did over a period ([`MediaCache::take_stats`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, serde::Serialize)]
pub struct CacheStats {
    /// Frames, audio spans and clips served from the cache.
    pub hits: u64,
    /// Served by a decode this request started or joined the queue of.
    pub misses: u64,
    /// Of the misses, those another request was already waiting for or decoding.
    pub coalesced: u64,
    /// Entries dropped to stay within the budget.
    pub evictions: u64,
    /// Bytes held now, and the most held at once.
    pub bytes_held: u64,
    pub bytes_peak: u64,
}

impl CacheStats {
    /// Hits over all lookups (0 when there were none).
    pub fn hit_rate(&self) -> f64 {
        let all = self.hits + self.misses;
        if all == 0 { 0.0 } else { self.hits as f64 / all as f64 }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum What {
    /// Label bits, and the image sizing (`None`: native size).
    Frame { t: u64, sizing: Option<(usize, usize)> },
    /// A whole answer to a span request ([`SharedVideo::memo`]): what it is, the span's bits
    /// and the settings it depends on.
    Memo { kind: &'static str, start: u64, end: u64, settings: [u64; 8] },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    video: u64,
    what: What,
}

#[derive(Clone)]
enum Value {
    Frame(Arc<Frame>),
    /// A memoised answer and its size in bytes.
    Memo(Arc<dyn Any + Send + Sync>, usize),
}

impl std::fmt::Debug for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Frame(fr) => write!(f, "Frame({} s)", fr.requested_s),
            Value::Memo(_, bytes) => write!(f, "Memo({bytes} bytes)"),
        }
    }
}

impl Value {
    fn bytes(&self) -> usize {
        ENTRY_OVERHEAD
            + match self {
                Value::Frame(f) => f.image.data.len(),
                Value::Memo(_, bytes) => *bytes,
            }
    }
}

/// Bytes of an audio clip's samples.
pub fn audio_bytes(a: &AudioClip) -> usize {
    a.samples.len() * std::mem::size_of::<f32>()
}

/// Bytes of a clip's pixel rows and samples.
pub fn clip_bytes(c: &Clip) -> usize {
    c.video.codes.len() + c.audio.as_ref().map_or(0, audio_bytes)
}

#[derive(Debug)]
enum Slot {
    /// A frame label waiting for the next pass over the video's decoder.
    Queued,
    Decoding,
    Ready {
        value: Value,
        tick: u64,
    },
    /// The decode failed; requests that waited for it decode their own request again.
    Failed,
}

#[derive(Debug)]
struct Entry {
    slot: Slot,
    /// Requests waiting to read this entry (it is not evicted, nor removed on failure, while
    /// any are).
    pins: usize,
}

#[derive(Debug, Default)]
struct State {
    /// Bytes the ready entries may hold (see the module doc).
    budget: usize,
    entries: HashMap<Key, Entry>,
    /// Ready entries by last use.
    lru: BTreeMap<u64, Key>,
    tick: u64,
    bytes: usize,
    videos: HashMap<(PathBuf, u64), (u64, Weak<SharedVideo>)>,
    next_video: u64,
    stats: CacheStats,
}

impl State {
    fn touch(&mut self, key: Key) -> Option<Value> {
        self.tick += 1;
        let tick = self.tick;
        let entry = self.entries.get_mut(&key)?;
        let Slot::Ready { value, tick: old } = &mut entry.slot else { return None };
        self.lru.remove(old);
        *old = tick;
        self.lru.insert(tick, key);
        Some(value.clone())
    }

    fn store(&mut self, key: Key, value: Value) {
        self.tick += 1;
        let tick = self.tick;
        self.bytes += value.bytes();
        let entry = self.entries.entry(key).or_insert(Entry { slot: Slot::Queued, pins: 0 });
        if let Slot::Ready { value: old, tick: t } = &entry.slot {
            self.bytes -= old.bytes();
            self.lru.remove(t);
        }
        entry.slot = Slot::Ready { value, tick };
        self.lru.insert(tick, key);
        self.stats.bytes_peak = self.stats.bytes_peak.max(self.bytes as u64);
        self.evict();
    }

    /// Drops least recently used entries no request is waiting to read until the ready
    /// entries fit the budget (or only such entries are left).
    fn evict(&mut self) {
        let budget = self.budget;
        if self.bytes <= budget {
            return;
        }
        let mut victims = Vec::new();
        let mut freed = 0usize;
        for (&tick, key) in &self.lru {
            if self.bytes - freed <= budget {
                break;
            }
            if let Some(Entry { slot: Slot::Ready { value, .. }, pins: 0 }) = self.entries.get(key) {
                freed += value.bytes();
                victims.push((tick, *key));
            }
        }
        for (tick, key) in victims {
            self.lru.remove(&tick);
            self.entries.remove(&key);
            self.stats.evictions += 1;
        }
        self.bytes -= freed;
    }

    /// Marks a waiting request's read of `key` done: returns the value when it is ready.
    fn unpin(&mut self, key: Key) -> Option<Value> {
        let value = self.touch(key);
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.pins = entry.pins.saturating_sub(1);
            if entry.pins == 0 && matches!(entry.slot, Slot::Failed) {
                self.entries.remove(&key);
            }
        }
        // The entry may have been kept over the budget only for this read.
        self.evict();
        value
    }

    fn forget_video(&mut self, id: u64) {
        let gone: Vec<Key> = self.entries.keys().filter(|k| k.video == id).copied().collect();
        for key in gone {
            if let Some(Entry { slot: Slot::Ready { value, tick }, .. }) = self.entries.remove(&key) {
                self.bytes -= value.bytes();
                self.lru.remove(&tick);
            }
        }
        self.videos.retain(|_, (v, _)| *v != id);
    }
}

/// The shared decode cache of a rollout (see the module doc).
#[derive(Debug)]
pub struct MediaCache {
    state: Mutex<State>,
    changed: Condvar,
}

impl MediaCache {
    /// A cache holding at most about `budget_bytes` of decoded media.
    pub fn new(budget_bytes: u64) -> Arc<MediaCache> {
        let budget = usize::try_from(budget_bytes).unwrap_or(usize::MAX);
        Arc::new(MediaCache { state: Mutex::new(State { budget, ..State::default() }), changed: Condvar::new() })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic elsewhere while holding the lock leaves consistent counts (every update is
        // completed before anything can panic), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn wait<'a>(&self, guard: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        self.changed.wait(guard).unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The video at `path` for one more episode: the one the episodes already on it share, or
    /// a newly opened one. `duration` (the dataset's) replaces the probed duration for checks
    /// and clamps; episodes with another duration get their own [`SharedVideo`].
    pub fn open(self: &Arc<Self>, path: &Path, duration: Option<f64>) -> Result<Arc<SharedVideo>, MediaError> {
        let key = (path.to_path_buf(), duration.map_or(u64::MAX, f64::to_bits));
        if let Some(video) = self.lock().videos.get(&key).and_then(|(_, w)| w.upgrade()) {
            return Ok(video);
        }
        // Opened outside the lock; if two episodes race, the first registered is kept.
        let mut source = MediaSource::open(path)?;
        if let Some(d) = duration {
            source.set_duration(d);
        }
        let mut state = self.lock();
        if let Some(video) = state.videos.get(&key).and_then(|(_, w)| w.upgrade()) {
            return Ok(video);
        }
        state.next_video += 1;
        let id = state.next_video;
        let (info, duration) = (source.info().clone(), source.duration());
        let video = Arc::new(SharedVideo { id, cache: self.clone(), info, duration, source: Mutex::new(source) });
        state.videos.insert(key, (id, Arc::downgrade(&video)));
        Ok(video)
    }

    /// The counters since the last call (bytes: now and the peak since the last call).
    pub fn take_stats(&self) -> CacheStats {
        let mut state = self.lock();
        let held = state.bytes as u64;
        let mut stats = std::mem::take(&mut state.stats);
        stats.bytes_held = held;
        state.stats.bytes_peak = held;
        stats
    }
}

/// One video shared by the episodes of a rollout that use it: its decoder and its entries in
/// the [`MediaCache`]. Dropped with the last episode holding it, taking its entries along.
pub struct SharedVideo {
    id: u64,
    cache: Arc<MediaCache>,
    info: VideoInfo,
    /// The duration requests are checked and clamped against.
    duration: f64,
    source: Mutex<MediaSource>,
}

impl std::fmt::Debug for SharedVideo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedVideo").field("id", &self.id).field("path", &self.info.path).finish_non_exhaustive()
    }
}

impl Drop for SharedVideo {
    fn drop(&mut self) {
        self.cache.lock().forget_video(self.id);
    }
}

/// The settings of `get_clip` sampling, as [`SharedVideo::memo`] settings (the last slot is
/// left for the caller).
pub fn sampling_key(s: &VideoSampling) -> [u64; 8] {
    [
        s.fps.to_bits(),
        s.min_frames as u64,
        s.max_frames as u64,
        s.min_pixels as u64,
        s.max_pixels as u64,
        s.total_pixels.to_bits(),
        u64::from(s.pad_audio_like_reference),
        0,
    ]
}

impl SharedVideo {
    pub fn info(&self) -> &VideoInfo {
        &self.info
    }

    fn key(&self, what: What) -> Key {
        Key { video: self.id, what }
    }

    /// Runs `f` on the video's decoder (one request at a time).
    fn with_source<T>(&self, f: impl FnOnce(&mut MediaSource) -> Result<T, MediaError>) -> Result<T, MediaError> {
        let mut source = self.source.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(&mut source)
    }

    /// `get_frames` of `[start, end]` with `num` frames: the labels `FrameRequest` gives,
    /// served from the cache where it can (see the module doc).
    pub fn frames(&self, req: &super::FrameRequest, sizing: Option<&ImageSizing>) -> Result<Frames, MediaError> {
        let labels = req.timestamps(self.duration)?;
        let sz = sizing.map(|s| (s.min_pixels, s.max_pixels));
        let keys: Vec<Key> = labels.iter().map(|t| self.key(What::Frame { t: t.to_bits(), sizing: sz })).collect();
        let mut got: Vec<Option<Arc<Frame>>> = vec![None; labels.len()];
        let mut waiting = Vec::new();
        {
            let mut state = self.cache.lock();
            for (i, &key) in keys.iter().enumerate() {
                if let Some(Value::Frame(f)) = state.touch(key) {
                    got[i] = Some(f);
                    state.stats.hits += 1;
                    continue;
                }
                state.stats.misses += 1;
                let entry = state.entries.entry(key).or_insert(Entry { slot: Slot::Queued, pins: 0 });
                let joined = matches!(entry.slot, Slot::Queued | Slot::Decoding) && entry.pins > 0;
                if !joined {
                    entry.slot = Slot::Queued;
                }
                entry.pins += 1;
                state.stats.coalesced += u64::from(joined);
                waiting.push(i);
            }
        }
        if waiting.is_empty() {
            return Ok(assemble(got, 0, 0));
        }
        let (gops, decoded) = self.decode_queued(sz, sizing);
        let mut failed = false;
        {
            let mut state = self.cache.lock();
            while waiting.iter().any(|&i| matches!(state.entries.get(&keys[i]).map(|e| &e.slot), Some(Slot::Decoding)))
            {
                state = self.cache.wait(state);
            }
            for &i in &waiting {
                match state.unpin(keys[i]) {
                    Some(Value::Frame(f)) => got[i] = Some(f),
                    _ => failed = true,
                }
            }
        }
        if failed {
            // A pass that failed on another request's label fails every label in it: decode
            // this request alone (its exact answer or error), and keep what it decoded.
            let own = self.with_source(|s| s.frames_at(&labels, sizing))?;
            let mut state = self.cache.lock();
            for (key, frame) in keys.iter().zip(&own.frames) {
                if !matches!(state.entries.get(key).map(|e| &e.slot), Some(Slot::Ready { .. } | Slot::Decoding)) {
                    state.store(*key, Value::Frame(Arc::new(frame.clone())));
                }
            }
            return Ok(own);
        }
        Ok(assemble(got, gops, decoded))
    }

    /// Takes the video's decoder and decodes every frame label queued for it (with this sizing)
    /// in one pass. Returns the GOPs and frames decoded (0 when others had taken them all).
    /// A failed pass marks its labels failed: each request that wanted them then decodes its
    /// own labels again (see [`SharedVideo::frames`]).
    fn decode_queued(&self, sz: Option<(usize, usize)>, sizing: Option<&ImageSizing>) -> (usize, usize) {
        let mut source = self.source.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let batch: Vec<Key> = {
            let mut state = self.cache.lock();
            let mut batch = Vec::new();
            for (key, entry) in state.entries.iter_mut() {
                let mine = key.video == self.id && matches!(key.what, What::Frame { sizing, .. } if sizing == sz);
                if mine && matches!(entry.slot, Slot::Queued) {
                    entry.slot = Slot::Decoding;
                    batch.push(*key);
                }
            }
            batch
        };
        if batch.is_empty() {
            return (0, 0);
        }
        let labels: Vec<f64> = batch
            .iter()
            .map(|k| match k.what {
                What::Frame { t, .. } => f64::from_bits(t),
                _ => f64::NAN,
            })
            .collect();
        let result = source.frames_at(&labels, sizing);
        drop(source);
        let mut state = self.cache.lock();
        let counts = match result {
            Ok(frames) => {
                let counts = (frames.gops_decoded, frames.frames_decoded);
                for (key, frame) in batch.iter().zip(frames.frames) {
                    state.store(*key, Value::Frame(Arc::new(frame)));
                }
                counts
            }
            Err(_) => {
                for key in &batch {
                    if let Some(e) = state.entries.get_mut(key) {
                        e.slot = Slot::Failed;
                    }
                }
                (0, 0)
            }
        };
        drop(state);
        self.cache.changed.notify_all();
        counts
    }

    /// `get_audio` of `[start, end]`, cached per span.
    pub fn audio(&self, start: f64, end: f64) -> Result<AudioClip, MediaError> {
        let a = self.memo("audio", start, end, [0; 8], audio_bytes, |s| s.audio(start, end))?;
        Ok((*a).clone())
    }

    /// `get_clip` of `[start, end]`, cached per span and sampling.
    pub fn clip(&self, start: f64, end: f64, sampling: &VideoSampling) -> Result<Clip, MediaError> {
        let c = self.memo("clip", start, end, sampling_key(sampling), clip_bytes, |s| s.clip(start, end, sampling))?;
        Ok((*c).clone())
    }

    /// The answer to a span request (`get_audio`, `get_clip`, or what a caller derives from
    /// one, e.g. the model's inputs), decoded once per (`kind`, span, `settings`): a hit, a
    /// wait for the identical request being decoded, or a decode of its own (whose error is
    /// returned as is). `kind` names what `decode` returns, so one kind always holds one type;
    /// `settings` are whatever else the answer depends on.
    pub fn memo<T: Any + Send + Sync>(
        &self,
        kind: &'static str,
        start: f64,
        end: f64,
        settings: [u64; 8],
        bytes: impl Fn(&T) -> usize,
        decode: impl Fn(&mut MediaSource) -> Result<T, MediaError>,
    ) -> Result<Arc<T>, MediaError> {
        let what = What::Memo { kind, start: start.to_bits(), end: end.to_bits(), settings };
        let value = self.request(what, |s| {
            let t = decode(s)?;
            let n = bytes(&t);
            Ok(Value::Memo(Arc::new(t), n))
        })?;
        match value {
            Value::Memo(any, _) => match any.downcast::<T>() {
                Ok(t) => Ok(t),
                // A kind reused for another type: decode without the cache.
                Err(_) => self.with_source(|s| decode(s)).map(Arc::new),
            },
            Value::Frame(_) => self.with_source(|s| decode(s)).map(Arc::new),
        }
    }

    /// One whole-request entry (see [`SharedVideo::memo`]).
    fn request(
        &self,
        what: What,
        decode: impl Fn(&mut MediaSource) -> Result<Value, MediaError>,
    ) -> Result<Value, MediaError> {
        let key = self.key(what);
        let mut state = self.cache.lock();
        if let Some(v) = state.touch(key) {
            state.stats.hits += 1;
            return Ok(v);
        }
        state.stats.misses += 1;
        if let Some(entry) = state.entries.get_mut(&key).filter(|e| matches!(e.slot, Slot::Decoding)) {
            entry.pins += 1;
            state.stats.coalesced += 1;
            while matches!(state.entries.get(&key).map(|e| &e.slot), Some(Slot::Decoding)) {
                state = self.cache.wait(state);
            }
            if let Some(v) = state.unpin(key) {
                return Ok(v);
            }
            drop(state);
            return self.with_source(|s| decode(s));
        }
        // A failed entry some request has still to read keeps its pins.
        state.entries.entry(key).or_insert(Entry { slot: Slot::Decoding, pins: 0 }).slot = Slot::Decoding;
        drop(state);
        let result = self.with_source(|s| decode(s));
        let mut state = self.cache.lock();
        match &result {
            Ok(v) => state.store(key, v.clone()),
            Err(_) => match state.entries.get_mut(&key) {
                Some(e) if e.pins > 0 => e.slot = Slot::Failed,
                _ => {
                    state.entries.remove(&key);
                }
            },
        }
        drop(state);
        self.cache.changed.notify_all();
        result
    }
}

fn assemble(got: Vec<Option<Arc<Frame>>>, gops_decoded: usize, frames_decoded: usize) -> Frames {
    let frames = got.into_iter().flatten().map(|f| (*f).clone()).collect();
    Frames { frames, gops_decoded, frames_decoded }
}
