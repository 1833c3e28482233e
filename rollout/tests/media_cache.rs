//! The shared decode cache (`media::cache`) on real videos generated with the `ffmpeg` CLI:
//! every answer equals, byte for byte, what an uncached `MediaSource` gives for the same request
//! (frames, audio, clips, and errors), for random request mixes served one after another and
//! from several threads at once; identical concurrent requests are decoded once; the byte
//! budget evicts; a video's entries go when its last episode does.
//!
//! Needs the `ffmpeg` feature and the `ffmpeg` CLI (under `CI` a missing CLI fails the tests).
#![cfg(feature = "ffmpeg")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollout::media::{
    AudioClip, Clip, FrameRequest, Frames, ImageSizing, MediaCache, MediaError, MediaSource, VideoSampling,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier, OnceLock};

/// 96x64, 25 fps, 12 s, H.264 with B-frames and a key frame every 25 frames, 440 Hz sine.
fn video() -> Option<&'static PathBuf> {
    static V: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    V.get_or_init(|| {
        if !rollout::prerequisite::require_ffmpeg_cli() {
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mix.mp4");
        let args = [
            "-nostdin",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=s=96x64:r=25:d=12",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=44100:duration=12",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            "-g",
            "25",
            "-bf",
            "2",
            "-c:a",
            "aac",
            "-shortest",
        ];
        let out = Command::new("ffmpeg").args(args).arg(&path).output().expect("ffmpeg");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        Some((dir, path))
    })
    .as_ref()
    .map(|(_, p)| p)
}

/// The dataset duration the episodes use: longer than the video, so requests well past its
/// end fail the way they do on real data (no frame within 3 s).
const DURATION: f64 = 16.0;

#[derive(Debug, Clone, Copy)]
enum Req {
    Frames { start: f64, end: f64, num: i64 },
    Audio { start: f64, end: f64 },
    Clip { start: f64, end: f64 },
}

/// What a request gives, comparable across cached and uncached paths.
#[derive(Debug, PartialEq)]
enum Answer {
    Frames(Vec<(u64, u64, Vec<u8>)>),
    Audio(Vec<u32>, u64),
    Clip(Vec<u64>, Vec<u8>, [usize; 3], Option<Vec<u32>>, usize),
    Error(String),
}

fn frames_answer(r: Result<Frames, MediaError>) -> Answer {
    match r {
        Ok(f) => Answer::Frames(
            f.frames.into_iter().map(|f| (f.requested_s.to_bits(), f.pts_s.to_bits(), f.image.data)).collect(),
        ),
        Err(e) => Answer::Error(e.to_string()),
    }
}

fn audio_bits(a: &AudioClip) -> Vec<u32> {
    a.samples.iter().map(|x| x.to_bits()).collect()
}

fn audio_answer(r: Result<AudioClip, MediaError>) -> Answer {
    match r {
        Ok(a) => Answer::Audio(audio_bits(&a), a.end_s.to_bits()),
        Err(e) => Answer::Error(e.to_string()),
    }
}

fn clip_answer(r: Result<Clip, MediaError>) -> Answer {
    match r {
        Ok(c) => Answer::Clip(
            c.timestamps.iter().map(|t| t.to_bits()).collect(),
            c.video.codes.to_vec(),
            c.video.grid_thw,
            c.audio.as_ref().map(audio_bits),
            c.source_frames,
        ),
        Err(e) => Answer::Error(e.to_string()),
    }
}

fn sizing() -> ImageSizing {
    ImageSizing { min_pixels: 4 * 28 * 28, max_pixels: 16 * 28 * 28 }
}

fn uncached(path: &Path, req: Req) -> Answer {
    let mut s = MediaSource::open(path).unwrap();
    s.set_duration(DURATION);
    match req {
        Req::Frames { start, end, num } => {
            frames_answer(s.frames(&FrameRequest::new(start, end, num), Some(&sizing())))
        }
        Req::Audio { start, end } => audio_answer(s.audio(start, end)),
        Req::Clip { start, end } => clip_answer(s.clip(start, end, &VideoSampling::default())),
    }
}

fn cached(cache: &Arc<MediaCache>, path: &Path, req: Req) -> Answer {
    let v = cache.open(path, Some(DURATION)).unwrap();
    match req {
        Req::Frames { start, end, num } => {
            frames_answer(v.frames(&FrameRequest::new(start, end, num), Some(&sizing())))
        }
        Req::Audio { start, end } => audio_answer(v.audio(start, end)),
        Req::Clip { start, end } => clip_answer(v.clip(start, end, &VideoSampling::default())),
    }
}

/// A small xorshift generator: the mixes are reproducible without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A time on a 0.25 s grid in `[0, max]`, so requests repeat and overlap.
    fn time(&mut self, max: f64) -> f64 {
        (self.next() % ((max * 4.0) as u64 + 1)) as f64 / 4.0
    }
}

/// Overviews, targeted frames, audio and clips, some repeated, some past the video's end.
fn mix(seed: u64, n: usize) -> Vec<Req> {
    let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    (0..n)
        .map(|_| {
            let a = rng.time(DURATION - 0.5);
            let b = (a + 0.5 + rng.time(3.0)).min(DURATION);
            match rng.next() % 5 {
                0 => Req::Frames { start: 0.0, end: 12.0, num: 8 },
                1 | 2 => Req::Frames { start: a, end: b, num: 1 + (rng.next() % 4) as i64 },
                3 => Req::Audio { start: a, end: b },
                _ => Req::Clip { start: a, end: b },
            }
        })
        .collect()
}

#[test]
fn cached_answers_equal_uncached_ones_for_random_mixes() {
    let Some(path) = video() else { return };
    let cache = MediaCache::new(256 << 20);
    let v = cache.open(path, Some(DURATION)).unwrap(); // keeps the entries alive between requests
    let reqs = mix(1, 60);
    let mut errors = 0;
    for (i, &req) in reqs.iter().enumerate() {
        let want = uncached(path, req);
        errors += usize::from(matches!(want, Answer::Error(_)));
        assert_eq!(cached(&cache, path, req), want, "request {i}: {req:?}");
    }
    assert!(errors > 0, "the mix reaches past the video's end");
    let stats = cache.take_stats();
    assert!(stats.hits > 0 && stats.misses > 0, "{stats:?}");
    drop(v);
    assert_eq!(cache.take_stats().bytes_held, 0, "the video's entries go with its last episode");
}

#[test]
fn concurrent_episodes_get_uncached_answers_and_share_decodes() {
    let Some(path) = video() else { return };
    let cache = MediaCache::new(256 << 20);
    let threads = 8;
    let reqs: Vec<Vec<Req>> = (0..threads).map(|t| mix(100 + t as u64 % 3, 12)).collect();
    let want: Vec<Vec<Answer>> = reqs.iter().map(|rs| rs.iter().map(|&r| uncached(path, r)).collect()).collect();
    let barrier = Arc::new(Barrier::new(threads));
    let got: Vec<Vec<Answer>> = std::thread::scope(|s| {
        let handles: Vec<_> = reqs
            .iter()
            .map(|rs| {
                let (cache, barrier) = (cache.clone(), barrier.clone());
                s.spawn(move || {
                    let episode = cache.open(path, Some(DURATION)).unwrap();
                    barrier.wait();
                    let out: Vec<Answer> = rs.iter().map(|&r| cached(&cache, path, r)).collect();
                    drop(episode);
                    out
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (t, (g, w)) in got.iter().zip(&want).enumerate() {
        for (i, (a, b)) in g.iter().zip(w).enumerate() {
            assert_eq!(a, b, "thread {t} request {i}: {:?}", reqs[t][i]);
        }
    }
    // Three distinct mixes over eight threads: most lookups are served by another's decode.
    let stats = cache.take_stats();
    assert!(stats.hits + stats.coalesced > stats.misses - stats.coalesced, "{stats:?}");
    assert_eq!(stats.bytes_held, 0, "every episode ended");
}

#[test]
fn identical_concurrent_overviews_are_decoded_once() {
    let Some(path) = video() else { return };
    let cache = MediaCache::new(256 << 20);
    let keep = cache.open(path, Some(DURATION)).unwrap();
    let overview = Req::Frames { start: 0.0, end: 11.0, num: 8 };
    let want = uncached(path, overview);
    let barrier = Arc::new(Barrier::new(8));
    std::thread::scope(|s| {
        for _ in 0..8 {
            let (cache, barrier, want) = (cache.clone(), barrier.clone(), &want);
            s.spawn(move || {
                barrier.wait();
                assert_eq!(&cached(&cache, path, overview), want);
            });
        }
    });
    let stats = cache.take_stats();
    // 8 frames decoded once; the other 56 lookups were hits or joined that decode.
    assert_eq!(stats.misses - stats.coalesced, 8, "{stats:?}");
    assert_eq!(stats.hits + stats.coalesced, 56, "{stats:?}");
    drop(keep);
}

#[test]
fn a_small_budget_evicts_and_answers_stay_exact() {
    let Some(path) = video() else { return };
    // A few frames' worth: every clip and most frames are evicted soon after they are read.
    let cache = MediaCache::new(64 << 10);
    let keep = cache.open(path, Some(DURATION)).unwrap();
    for (i, &req) in mix(7, 40).iter().enumerate() {
        assert_eq!(cached(&cache, path, req), uncached(path, req), "request {i}: {req:?}");
    }
    let stats = cache.take_stats();
    assert!(stats.evictions > 0, "{stats:?}");
    assert!(stats.bytes_held <= 64 << 10, "{stats:?}");
    drop(keep);
}

#[test]
fn shared_environments_give_the_model_inputs_private_ones_give() {
    use rollout::episode::{MediaEnv, VideoEnv};
    let Some(path) = video() else { return };
    let cache = MediaCache::new(256 << 20);
    let open = |shared: bool| {
        let mut env = if shared {
            VideoEnv::open_shared(&cache, path, Some(DURATION), true).unwrap()
        } else {
            VideoEnv::open(path, Some(DURATION), true).unwrap()
        };
        env.sizing = sizing();
        env
    };
    let (private, shared, shared_too) = (open(false), open(true), open(true));
    let mut served = 0;
    for (i, &req) in mix(11, 40).iter().enumerate() {
        let ask = |env: &VideoEnv| match req {
            Req::Frames { start, end, num } => {
                let ts: Vec<f64> = (0..num).map(|k| start + k as f64).collect();
                env.frames(start, end, &ts)
            }
            Req::Audio { start, end } => env.audio(start, end),
            Req::Clip { start, end } => env.clip(start, end),
        };
        let want = ask(&private);
        served += usize::from(want.is_ok());
        assert_eq!(ask(&shared), want, "request {i}: {req:?}");
        assert_eq!(ask(&shared_too), want, "request {i} again, from another episode: {req:?}");
    }
    assert!(served > 20, "most of the mix is answered ({served})");
    assert!(cache.take_stats().hits > 0);
}
