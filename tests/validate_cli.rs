#![allow(clippy::unwrap_used, clippy::expect_used)]
//! `omnirl validate` end to end: shipped recipes, broken recipes, broken data and the
//! distributed plan, each asserting the exact key, line and column reported.

use omnirl_tests::{omnirl, stderr, stdout};
use serde_json::Value;
use std::fs;
use std::path::Path;
use std::process::Output;

/// Runs `omnirl validate <recipe> --json` with extra env vars and returns (exit code, JSON).
fn validate_json(recipe: &Path, envs: &[(&str, &str)], sets: &[&str]) -> (i32, Value) {
    let mut cmd = omnirl();
    cmd.arg("validate").arg(recipe).arg("--json");
    for s in sets {
        cmd.arg("--set").arg(s);
    }
    for (k, v) in envs {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let json: Value =
        serde_json::from_str(&stdout(&out)).unwrap_or_else(|e| panic!("{e}: {}{}", stdout(&out), stderr(&out)));
    (out.status.code().unwrap(), json)
}

/// `(location, message)` of every error in a JSON result.
fn errors(json: &Value) -> Vec<(String, String)> {
    json["problems"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["severity"] == "error")
        .map(|p| (p["location"].as_str().unwrap().to_string(), p["message"].as_str().unwrap().to_string()))
        .collect()
}

fn has_error(json: &Value, location: &str, fragment: &str) -> bool {
    errors(json).iter().any(|(l, m)| l == location && m.contains(fragment))
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    fs::write(&path, text).unwrap();
    path
}

fn run_text(recipe: &str, envs: &[(&str, &str)]) -> Output {
    let mut cmd = omnirl();
    cmd.args(["validate", recipe]);
    for (k, v) in envs {
        cmd.env(k, v);
    }
    cmd.output().unwrap()
}

/// A minimal RL recipe over the quickstart data in `dir`, with `extra` appended to the stage.
fn rl_recipe(extra: &str) -> String {
    let root = omnirl_tests::repo_root();
    format!(
        "name: t\nstages:\n  - name: rl\n    kind: rl\n    model:\n      init: random\n      config: {root}/data/quickstart/tiny_thinker.json\n    data:\n      train_files: [{root}/data/quickstart/rl.jsonl]\n      media_root: {root}/data/quickstart\n    rollout:\n      prompts_per_step: 8\n      group_size: 4\n{extra}",
        root = root.display()
    )
}

#[test]
fn quickstart_validates_and_prints_the_plan() {
    let out = run_text("recipes/quickstart.yaml", &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("# resolved recipe (recipes/quickstart.yaml)"));
    assert!(text.contains("batch: 8 prompts x 4 = 32 episodes/step"), "{text}");
    assert!(stderr(&out).contains("0 error(s)"));
}

#[test]
fn json_plan_reports_the_rank_layout_from_each_launcher() {
    let recipe = Path::new("recipes/quickstart.yaml");
    // (variables, world size, rank, local rank, launcher)
    type Case<'a> = (&'a [(&'a str, &'a str)], u64, u64, u64, &'a str);
    let cases: &[Case] = &[
        (&[], 1, 0, 0, "single"),
        (
            &[
                ("RANK", "3"),
                ("WORLD_SIZE", "4"),
                ("LOCAL_RANK", "1"),
                ("LOCAL_WORLD_SIZE", "2"),
                ("MASTER_ADDR", "10.0.0.1"),
                ("MASTER_PORT", "29500"),
            ],
            4,
            3,
            1,
            "env",
        ),
        (
            &[("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1")],
            2,
            1,
            1,
            "open_mpi",
        ),
        (&[("PMI_RANK", "0"), ("PMI_SIZE", "4"), ("MPI_LOCALRANKID", "0")], 4, 0, 0, "pmi"),
        (
            &[("SLURM_PROCID", "5"), ("SLURM_NTASKS", "8"), ("SLURM_LOCALID", "1"), ("SLURM_NTASKS_PER_NODE", "4(x2)")],
            8,
            5,
            1,
            "slurm",
        ),
    ];
    for (envs, world, rank, local, launcher) in cases {
        let (code, json) = validate_json(recipe, envs, &[]);
        let plan = &json["plan"];
        assert_eq!(plan["world_size"], *world, "{envs:?}");
        assert_eq!(plan["rank"], *rank, "{envs:?}");
        assert_eq!(plan["local_rank"], *local, "{envs:?}");
        assert_eq!(plan["launcher"], *launcher, "{envs:?}");
        assert_eq!(code, 0, "{envs:?}: {:?}", errors(&json));
        assert_eq!(json["ok"], true);
        assert!(json["recipe"]["stages"].is_array());
    }
}

#[test]
fn shipped_reference_recipes_report_the_missing_checkpoint_and_data() {
    for recipe in ["recipes/rl_taura.yaml", "recipes/rl_grpo.yaml"] {
        let (code, json) = validate_json(Path::new(recipe), &[], &[]);
        assert_eq!(code, 1);
        let errs = errors(&json);
        assert!(has_error(&json, "checkpoints/OmniAgent-SFT-7B", "model directory not found"), "{errs:?}");
        assert!(has_error(&json, "data/train_rl.jsonl", "cannot read"), "{errs:?}");
        // The reference layout itself is consistent: 32 x 8 episodes, waves of 2.
        assert_eq!(json["plan"]["stages"][0]["rl_batch"]["episodes_per_step"], 256);
        assert_eq!(json["plan"]["stages"][0]["rl_batch"]["wave_size"], 2);
    }
    let (_, json) = validate_json(Path::new("recipes/rl_taura.yaml"), &[], &[]);
    assert_eq!(json["recipe"]["stages"][0]["algorithm"]["estimator"], "taura");
    let (_, json) = validate_json(Path::new("recipes/rl_grpo.yaml"), &[], &[]);
    assert_eq!(json["recipe"]["stages"][0]["algorithm"]["estimator"], "grpo");
    for recipe in ["recipes/sft_agent.yaml", "recipes/sft_then_rl.yaml"] {
        let (code, json) = validate_json(Path::new(recipe), &[], &[]);
        assert_eq!(code, 1);
        assert!(has_error(&json, "checkpoints/Qwen2.5-Omni-7B", "model directory not found"), "{:?}", errors(&json));
    }
}

#[test]
fn reference_environment_variables_point_a_shipped_recipe_at_real_files() {
    // TRAIN_FILE / VAL_FILE / MODEL_BASE_PATH as in the reference's launch scripts.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("OmniAgent-SFT-7B");
    fs::create_dir(&ckpt).unwrap();
    let (code, json) = validate_json(
        Path::new("recipes/rl_taura.yaml"),
        &[
            ("TRAIN_FILE", "data/quickstart/rl.jsonl"),
            ("VAL_FILE", "data/quickstart/eval.jsonl"),
            ("MODEL_BASE_PATH", dir.path().to_str().unwrap()),
            ("MAX_STEPS", "30"),
        ],
        &["stages.rl.data.media_root=data/quickstart", "stages.rl.rollout.prompts_per_step=8"],
    );
    assert_eq!(code, 1);
    let errs = errors(&json);
    // Only the (empty) checkpoint directory is left to complain about.
    assert!(errs.iter().all(|(l, _)| l.starts_with(ckpt.to_str().unwrap())), "{errs:?}");
    let keys: Vec<&str> = json["overrides"].as_array().unwrap().iter().map(|o| o["key"].as_str().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "stages[0].data.train_files",
            "stages[0].data.val_files",
            "stages[0].model.base_path",
            "stages[0].environment.max_steps",
            "stages[0].data.media_root",
            "stages[0].rollout.prompts_per_step"
        ]
    );
    assert_eq!(json["recipe"]["stages"][0]["environment"]["max_steps"], 30);
    assert_eq!(json["plan"]["stages"][0]["steps"]["steps_per_epoch"], 12); // 96 samples / 8, drop_last
}

#[test]
fn the_reference_rl_layout_plans_to_fit_eight_ranks_of_80_gb() {
    // The 7B config alone (no weights): the plan of recipes/rl_taura.yaml on 8 ranks.
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("OmniAgent-SFT-7B");
    fs::create_dir(&ckpt).unwrap();
    fs::write(ckpt.join("config.json"), trainer::model::QWEN25_OMNI_7B_THINKER_JSON).unwrap();
    let env = [
        ("TRAIN_FILE", "data/quickstart/rl.jsonl"),
        ("VAL_FILE", "data/quickstart/eval.jsonl"),
        ("MODEL_BASE_PATH", dir.path().to_str().unwrap()),
        ("WORLD_SIZE", "8"),
        ("RANK", "0"),
        ("LOCAL_RANK", "0"),
        ("MASTER_ADDR", "127.0.0.1"),
        ("MASTER_PORT", "29500"),
    ];
    let (_, json) =
        validate_json(Path::new("recipes/rl_taura.yaml"), &env, &["stages.rl.data.media_root=data/quickstart"]);
    let errs = errors(&json);
    assert!(errs.iter().all(|(l, _)| l.starts_with(ckpt.to_str().unwrap())), "only the missing weights: {errs:?}");
    let mem = &json["plan"]["stages"][0]["model"]["memory"];
    let gib = |k: &str| mem[k].as_u64().unwrap() as f64 / f64::from(1u32 << 30);
    // bf16 weights 16.6 GiB, bf16 grads of the LLM 14.2 GiB, fp32 masters and AdamW moments of
    // the LLM sharded over 8 ranks (28.4 / 8 and 56.7 / 8 GiB, plus the partition's imbalance).
    assert!((gib("weights") - 16.64).abs() < 0.01 && (gib("grads") - 14.19).abs() < 0.01, "{mem}");
    assert!(gib("master") > 3.5 && gib("master") < 3.8 && gib("optimizer") > 7.0 && gib("optimizer") < 7.6, "{mem}");
    assert!(gib("total") < 80.0, "{mem}");
    let warnings: Vec<String> = json["problems"].as_array().unwrap().iter().map(|p| p["message"].to_string()).collect();
    assert!(!warnings.iter().any(|w| w.contains("exceeds")), "{warnings:?}");
}

#[test]
fn broken_recipe_reports_every_problem_with_its_line() {
    let dir = tempfile::tempdir().unwrap();
    let text = rl_recipe(
        "    optimiser:\n      lr: 1e-6\n    algorithm:\n      estimator: tuara\n      ppo_epochs: two\n    environment:\n      max_steps: 1\n",
    );
    let recipe = write(dir.path(), "bad.yaml", &text);
    let (code, json) = validate_json(&recipe, &[], &[]);
    assert_eq!(code, 1);
    let at = |line: usize, col: usize| format!("{}:{line}:{col}", recipe.display());
    let errs = errors(&json);
    assert!(has_error(&json, &at(14, 5), "unknown key `optimiser`; did you mean `optimizer`?"), "{errs:?}");
    assert!(
        has_error(
            &json,
            &at(17, 18),
            "unknown value `tuara`; expected one of: grpo, taura, grpo-no-std (did you mean `taura`?)"
        ),
        "{errs:?}"
    );
    assert!(has_error(&json, &at(18, 19), "expected u32, found string \"two\""), "{errs:?}");
    assert!(has_error(&json, &at(20, 18), "must be at least 2 (step 1 cannot answer)"), "{errs:?}");
    let keys: Vec<&str> = json["problems"].as_array().unwrap().iter().filter_map(|p| p["key"].as_str()).collect();
    for key in [
        "stages[0].optimiser",
        "stages[0].algorithm.estimator",
        "stages[0].algorithm.ppo_epochs",
        "stages[0].environment.max_steps",
    ] {
        assert!(keys.contains(&key), "{key} not in {keys:?}");
    }
    assert_eq!(errs.len(), 4, "{errs:?}");
}

#[test]
fn the_pass_rate_filter_is_checked_and_its_unknown_epoch_length_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(dir.path(), "r.yaml", &rl_recipe(""));
    let problems = |json: &Value, severity: &str| -> Vec<(String, String)> {
        let all = json["problems"].as_array().unwrap().iter().filter(|p| p["severity"] == severity);
        all.map(|p| (p["key"].as_str().unwrap_or("").to_string(), p["message"].as_str().unwrap().to_string())).collect()
    };
    // Bad values: each reported at its key.
    let (code, json) = validate_json(&recipe, &[], &["stages.rl.data.pass_rate_filter={samples: 0, keep_below: 0}"]);
    assert_eq!(code, 1);
    let errs = problems(&json, "error");
    let keys: Vec<&str> = errs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["stages[0].data.pass_rate_filter.samples", "stages[0].data.pass_rate_filter.keep_below"]);
    assert!(errs[0].1.contains("must be at least 1, found 0") && errs[1].1.contains("> 0, found 0"), "{errs:?}");
    // Good values without max_steps: valid, with a warning that epochs count the kept prompts.
    let (code, json) = validate_json(&recipe, &[], &["stages.rl.data.pass_rate_filter={samples: 2}"]);
    assert_eq!(code, 0, "{:?}", errors(&json));
    let warns = problems(&json, "warning");
    assert!(
        warns.iter().any(|(k, m)| k == "stages[0].data.pass_rate_filter" && m.contains("set schedule.max_steps")),
        "{warns:?}"
    );
    assert_eq!(
        json["recipe"]["stages"][0]["data"]["pass_rate_filter"],
        serde_json::json!({"samples": 2, "keep_below": 1.0})
    );
    // With max_steps: no warning.
    let sets = ["stages.rl.data.pass_rate_filter={samples: 2}", "stages.rl.schedule.max_steps=3"];
    let (_, json) = validate_json(&recipe, &[], &sets);
    assert!(!problems(&json, "warning").iter().any(|(k, _)| k.contains("pass_rate_filter")), "{json}");
    // Only rl stages filter prompts.
    let (code, json) =
        validate_json(Path::new("recipes/quickstart.yaml"), &[], &["stages.sft.data.pass_rate_filter={samples: 2}"]);
    assert_eq!(code, 1);
    assert!(
        problems(&json, "error")
            .iter()
            .any(|(k, m)| k == "stages[0].data.pass_rate_filter" && m.contains("only rl stages")),
        "{:?}",
        errors(&json)
    );
}

#[test]
fn text_mode_prints_problems_and_no_plan_on_errors() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(dir.path(), "bad.yaml", &rl_recipe("    rollout_x: 1\n"));
    let out = run_text(recipe.to_str().unwrap(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    let err = stderr(&out);
    assert!(
        err.contains(&format!(
            "error: {}:14:5: stages[0].rollout_x: unknown key `rollout_x`; did you mean `rollout`?",
            recipe.display()
        )),
        "{err}"
    );
    assert!(err.contains("1 error(s)"), "{err}");
}

#[test]
fn batch_arithmetic_against_the_world_size() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(dir.path(), "r.yaml", &rl_recipe(""));
    let env = [("RANK", "0"), ("WORLD_SIZE", "3"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];
    let (code, json) = validate_json(&recipe, &env, &[]);
    assert_eq!(code, 1);
    // prompts_per_step: 8 is on line 12, column 25.
    let loc = format!("{}:12:25", recipe.display());
    assert!(
        has_error(
            &json,
            &loc,
            "8 × group_size 4 = 32 episodes do not split evenly over world size 3; use a multiple such as prompts_per_step 9"
        ),
        "{:?}",
        errors(&json)
    );
    // The same recipe on 4 ranks: 32 episodes, 8 per rank.
    let env4 = [("RANK", "0"), ("WORLD_SIZE", "4"), ("MASTER_ADDR", "127.0.0.1"), ("MASTER_PORT", "29500")];
    let (code, json) = validate_json(&recipe, &env4, &[]);
    assert_eq!(code, 0, "{:?}", errors(&json));
    assert_eq!(json["plan"]["stages"][0]["rl_batch"]["episodes_per_rank"], 8);
    // A value that fails to parse is reported once, not re-checked with its default.
    let (_, json) = validate_json(&recipe, &env, &["stages[0].rollout.prompts_per_step=many"]);
    let errs = errors(&json);
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0].0, "--set stages[0].rollout.prompts_per_step=many");
    // A dataset smaller than one step is an error, not a silent zero-step run.
    let (_, json) = validate_json(&recipe, &[], &["stages[0].rollout.prompts_per_step=512"]);
    assert!(
        errors(&json)
            .iter()
            .any(|(l, m)| l == "--set stages[0].rollout.prompts_per_step=512" && m.contains("96 valid samples")),
        "{:?}",
        errors(&json)
    );
}

#[test]
fn override_sources_are_named_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let recipe = write(dir.path(), "r.yaml", &rl_recipe(""));
    let (_, json) =
        validate_json(&recipe, &[("MICRO_RATIO", "lots")], &["stages.rl.optimizer.lr=fast", "stages.nope.x=1"]);
    assert!(
        has_error(&json, "environment variable MICRO_RATIO", "expected u32, found string \"lots\""),
        "{:?}",
        errors(&json)
    );
    assert!(
        has_error(&json, "--set stages.rl.optimizer.lr=fast", "expected f64, found string \"fast\""),
        "{:?}",
        errors(&json)
    );
    assert!(has_error(&json, "--set stages.nope.x=1", "none is `nope`"), "{:?}", errors(&json));
}

#[test]
fn broken_data_lines_are_reported_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let video = dir.path().join("v.mp4");
    fs::write(&video, b"not checked beyond existence here").unwrap();
    let good = r#"{"question_type": "MCQ_x", "question": "q", "options": ["A. a", "B. b"], "answer": "B", "video": "v.mp4", "fps": 30.0, "duration_seconds": 50.0, "has_audio": true}"#;
    let lines = [
        good.to_string(),
        good.replace("\"duration_seconds\": 50.0", "\"duration_seconds\": \"50\""),
        r#"{"question_type": "TR", "question": "q", "options": null, "answer": "[[40.0, 12.5]]", "video": "v.mp4", "fps": 30.0, "duration_seconds": 50.0, "has_audio": false}"#.to_string(),
        good.replace("\"answer\": \"B\"", "\"answer\": \"E\""),
        good.replace("v.mp4", "missing.mp4"),
        "{not json".to_string(),
    ];
    let data = write(dir.path(), "train.jsonl", &(lines.join("\n") + "\n"));
    let recipe = write(
        dir.path(),
        "r.yaml",
        &rl_recipe("")
            .replace(
                &format!("{}/data/quickstart/rl.jsonl", omnirl_tests::repo_root().display()),
                data.to_str().unwrap(),
            )
            .replace(
                &format!("media_root: {}/data/quickstart", omnirl_tests::repo_root().display()),
                &format!("media_root: {}", dir.path().display()),
            ),
    );
    let (code, json) = validate_json(&recipe, &[], &["stages.rl.rollout.prompts_per_step=1"]);
    assert_eq!(code, 1);
    let file = data.display().to_string();
    let errs = errors(&json);
    let lines_with_errors: Vec<String> = errs.iter().map(|(l, _)| l.clone()).filter(|l| l.starts_with(&file)).collect();
    for n in [2, 3, 4, 5, 6] {
        assert!(lines_with_errors.contains(&format!("{file}:{n}")), "line {n} not reported: {errs:?}");
    }
    assert!(!lines_with_errors.contains(&format!("{file}:1")), "{errs:?}");
    assert!(has_error(&json, &format!("{file}:2"), "duration_seconds"), "{errs:?}");
    assert!(has_error(&json, &format!("{file}:4"), "\"E\""), "{errs:?}");
    assert!(has_error(&json, &format!("{file}:5"), "missing.mp4"), "{errs:?}");
}

#[test]
fn checkpoint_headers_are_checked_against_the_config() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = dir.path().join("tiny");
    let cfg = trainer::model::tiny_test_config();
    let written = trainer::checkpoint::write_random_checkpoint(&cfg, &ckpt, 2).unwrap();
    assert_eq!(written.shard_files.len(), 2);
    let recipe_text = rl_recipe("").replace(
        &format!(
            "init: random\n      config: {}/data/quickstart/tiny_thinker.json",
            omnirl_tests::repo_root().display()
        ),
        &format!("path: {}", ckpt.display()),
    );
    let recipe = write(dir.path(), "r.yaml", &recipe_text);
    let (code, json) = validate_json(&recipe, &[], &[]);
    assert_eq!(code, 0, "{:?}", errors(&json));
    assert!(json["plan"]["stages"][0]["model"]["params"]["llm"].as_u64().unwrap() > 0);

    // Point one tensor of shard 1 at shard 2 in the index: shard 2 lacks it.
    let index_path = ckpt.join("model.safetensors.index.json");
    let mut index: Value = serde_json::from_str(&fs::read_to_string(&index_path).unwrap()).unwrap();
    let shard1 = written.shard_files[0].file_name().unwrap().to_str().unwrap().to_string();
    let shard2 = written.shard_files[1].file_name().unwrap().to_str().unwrap().to_string();
    let map = index["weight_map"].as_object_mut().unwrap();
    let moved = map.iter().find(|(_, f)| **f == shard1).map(|(k, _)| k.clone()).unwrap();
    map.insert(moved.clone(), Value::String(shard2.clone()));
    fs::write(&index_path, serde_json::to_string(&index).unwrap()).unwrap();
    let (code, json) = validate_json(&recipe, &[], &[]);
    assert_eq!(code, 1);
    let location = ckpt.join(&shard2).display().to_string();
    assert!(
        has_error(
            &json,
            &location,
            &format!(
                "tensor `{moved}` is listed in model.safetensors.index.json for this shard but the shard does not contain it"
            )
        ),
        "{:?}",
        errors(&json)
    );
}

#[test]
fn system_prompt_templates_are_parsed_in_the_dry_run() {
    let dir = tempfile::tempdir().unwrap();
    let template = write(dir.path(), "prompt.txt", "Fetch up to {max_frames} frames.\nBudget: {max_stepz} steps.\n");
    let recipe = write(dir.path(), "r.yaml", &rl_recipe(""));
    let set = format!("stages.rl.environment.system_prompt={}", template.display());
    let (code, json) = validate_json(&recipe, &[], &[&set]);
    assert_eq!(code, 1);
    let wanted = format!("{}:2: unknown placeholder {{max_stepz}}", template.display());
    assert!(errors(&json).iter().any(|(_, m)| m.starts_with(&wanted)), "{:?}", errors(&json));
}
