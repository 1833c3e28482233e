use super::*;

fn vars(audio: bool) -> PromptVars {
    PromptVars {
        max_frames: 60,
        max_audio_seconds: 300.0,
        max_clip_seconds: 60.0,
        min_audio_seconds: 0.1,
        min_clip_frames: 4,
        max_steps: 9,
        audio_available: audio,
    }
}

#[test]
fn placeholders_escapes_and_empty_lines() {
    let t =
        PromptTemplate::parse("A {max_frames} {{x}} {max_clip_len}s\n{audio_action}\n\nend {max_steps}", "t").unwrap();
    let with = t.render(&vars(true));
    assert_eq!(with, "A 60 {x} 60s\n{\"type\": \"get_audio\", \"start\": <seconds>, \"end\": <seconds>}\n\nend 9");
    // The placeholder-only line disappears with its newline; the blank line stays.
    assert_eq!(t.render(&vars(false)), "A 60 {x} 60s\n\nend 9");
    let frac = PromptVars { max_audio_seconds: 210.5, min_audio_seconds: 1.0, ..vars(true) };
    let t = PromptTemplate::parse("{max_audio_seconds}|{max_audio_len}|{min_audio_seconds}|{min_clip_frames}", "t")
        .unwrap();
    assert_eq!(t.render(&frac), "210.5|210.5|1.0|4");
}

#[test]
fn errors_name_the_line() {
    let e = PromptTemplate::parse("ok\n{max_frame}", "p.txt").unwrap_err().to_string();
    assert!(e.starts_with("p.txt:2: unknown placeholder {max_frame}"), "{e}");
    let e = PromptTemplate::parse("a } b", "p.txt").unwrap_err().to_string();
    assert!(e.starts_with("p.txt:1: unbalanced brace"), "{e}");
    let e = PromptTemplate::parse("{ \"json\": 1 }", "p.txt").unwrap_err().to_string();
    assert!(e.contains("unknown placeholder"), "{e}");
    assert!(PromptTemplate::parse("{oops", "p.txt").is_err());
}

#[test]
fn default_template_teaches_the_protocol() {
    let t = PromptTemplate::default_template().unwrap();
    let text = t.render(&vars(true));
    assert!(text.starts_with('\n'), "leading newline as the reference's prompt");
    for needle in [
        "{\"type\": \"get_frames\", \"start\": <seconds>, \"end\": <seconds>, \"num\": <integer>}",
        "{\"type\": \"get_audio\", \"start\": <seconds>, \"end\": <seconds>}",
        "{\"type\": \"get_clip\", \"start\": <seconds>, \"end\": <seconds>}",
        "{\"type\": \"answer\", \"content\": \"<string>\"}",
        "at most 60 frames",
        "at most 300 s",
        "at most 60 s",
        "at most 9 turns",
        "Frames 10.00s-12.00s (num=5). Timestamps: [10.00s, 10.50s, 11.00s, 11.50s, 12.00s] [MEDIA OMITTED - Refer to your Observation]",
        "Audio 10.00s-20.00s [MEDIA OMITTED - Refer to your Observation]",
        "confidence",
        "0.9",
        "FINAL STEP",
        "[ERROR]",
        "[NOTICE]",
        "\"type\": \"get_frames|get_audio|get_clip|answer\"",
    ] {
        assert!(text.contains(needle), "missing {needle:?}");
    }
    let silent = t.render(&vars(false));
    assert!(!silent.contains("get_audio"), "audio hidden: {silent}");
    assert!(!silent.contains("\n\n\n"));
    assert!(silent.contains("\"type\": \"get_frames|get_clip|answer\""));
}

#[test]
fn the_reference_builder_syntax_is_accepted() {
    // The reference's f-string escapes and placeholder names paste in unchanged.
    let t = PromptTemplate::parse("get_frames (Max {max_frames_len} frames) {{\"a\": 1}}", "ref").unwrap();
    assert_eq!(t.render(&vars(true)), "get_frames (Max 60 frames) {\"a\": 1}");
}
