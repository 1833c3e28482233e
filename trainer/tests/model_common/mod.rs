//! Shared helpers of the model tests: the tiny fixture checkpoint and the reference cases of
//! `scripts/make_model_fixtures.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};
use trainer::model::thinker::{Audio, MediaInput, Thinker, Video, Visual};
use trainer::model::weights::LoadOptions;

pub const CASES: [&str; 5] = ["text", "image", "video", "audio", "video_audio"];

pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/model")
}

pub fn cases() -> HashMap<String, Tensor> {
    Tensor::read_safetensors(fixtures().join("cases.safetensors")).unwrap().into_iter().collect()
}

pub fn vec_i64(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(&t.to_kind(Kind::Int64).flatten(0, -1)).unwrap()
}

pub fn grids(t: &Tensor) -> Vec<[usize; 3]> {
    vec_i64(t).chunks(3).map(|g| [g[0] as usize, g[1] as usize, g[2] as usize]).collect()
}

pub fn media(c: &HashMap<String, Tensor>, name: &str) -> MediaInput {
    let get = |k: &str| c.get(&format!("{name}.{k}"));
    let mut m = MediaInput::default();
    let split = |pix: &Tensor, gs: Vec<[usize; 3]>| -> Vec<Visual> {
        let mut out = Vec::new();
        let mut row = 0;
        for g in gs {
            let n = (g[0] * g[1] * g[2]) as i64;
            let v = Vec::<f32>::try_from(&pix.narrow(0, row, n).flatten(0, -1)).unwrap();
            out.push(Visual::values(v, g));
            row += n;
        }
        out
    };
    if let (Some(p), Some(g)) = (get("image_pixels"), get("image_grids")) {
        m.images = split(p, grids(g));
    }
    if let (Some(p), Some(g), Some(s)) = (get("video_pixels"), get("video_grids"), get("video_second_per_grid")) {
        let spg = Vec::<f64>::try_from(s).unwrap();
        m.videos = split(p, grids(g))
            .into_iter()
            .zip(spg)
            .map(|(visual, second_per_grid)| Video { visual, second_per_grid })
            .collect();
    }
    if let (Some(mel), Some(f)) = (get("audio_mel"), get("audio_frames")) {
        let mut col = 0;
        for frames in vec_i64(f) {
            let a = mel.narrow(1, col, frames).contiguous();
            m.audios.push(Audio { mel: Vec::<f32>::try_from(&a.flatten(0, -1)).unwrap(), frames: frames as usize });
            col += frames;
        }
    }
    m
}

pub fn ids(c: &HashMap<String, Tensor>, name: &str) -> Vec<u32> {
    vec_i64(&c[&format!("{name}.ids")]).into_iter().map(|x| x as u32).collect()
}

pub fn load(device: Device) -> Thinker {
    Thinker::load(&fixtures().join("tiny"), LoadOptions { dtype: Some(Kind::Float), device }).unwrap()
}

pub fn devices() -> Vec<Device> {
    let mut d = vec![Device::Cpu];
    if tch::Cuda::is_available() {
        d.push(Device::Cuda(0));
    }
    d
}

/// An MCQ episode on a one-second video, for contexts handed to the rollout policy directly.
pub fn episode_spec() -> rollout::episode::EpisodeSpec {
    rollout::episode::EpisodeSpec {
        question_id: "q".into(),
        video: "v.mp4".into(),
        question_type: "MCQ".into(),
        qtype: rewards::QuestionType::Mcq,
        question: "?".into(),
        options: vec![],
        answer: "A".into(),
        meta: rollout::episode::validate::VideoMeta { duration: 1.0, fps: None, has_audio: false },
        data_source: None,
        annotations: None,
    }
}
