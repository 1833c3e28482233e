//! The example files under `data/examples/` are valid in their formats, with no warning.
//! Their media paths are relative to the repository root; the files themselves are generated
//! separately, so media are checked only once the directory they live in exists.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use rollout::data::{CheckOptions, DataFormat, check_file};
use std::path::{Path, PathBuf};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

#[test]
fn example_files_are_valid() {
    let root = repo_root();
    let cases = [
        ("eval.jsonl", DataFormat::Eval, 5, "videos", &[("MCQ", 1), ("TR", 1), ("NUM", 1), ("SIZE", 1), ("FF", 1)][..]),
        ("rl.jsonl", DataFormat::Rl, 4, "videos", &[("MCQ", 2), ("TR", 1), ("SIZE", 1)][..]),
        ("sft.jsonl", DataFormat::Sft, 4, "media", &[("MCQ", 4)][..]),
    ];
    for (name, format, lines, media_dir, types) in cases {
        let path = root.join("data/examples").join(name);
        let check_media = root.join("data/examples").join(media_dir).is_dir();
        let opts = CheckOptions { media_root: Some(root.clone()), check_media, max_problems: 200 };
        let report = check_file(&path, format, &opts);
        assert!(report.problems.is_empty(), "{name}: {:#?}", report.problems);
        assert_eq!((report.lines, report.samples), (lines, lines), "{name}");
        let got: Vec<(&str, usize)> = report.question_types.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        let mut want = types.to_vec();
        want.sort();
        assert_eq!(got, want, "{name}");
    }
}
