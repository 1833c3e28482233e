//! Which parts of the thinker a stage trains.

/// Which parts of the thinker receive gradients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrainableParts {
    pub llm: bool,
    pub vision: bool,
    pub audio: bool,
}

impl TrainableParts {
    /// RL: the whole thinker, encoders included (docs/reference.md#optimizer).
    pub fn rl() -> Self {
        TrainableParts { llm: true, vision: true, audio: true }
    }

    /// SFT: the LLM only (`freeze_vision_encoder` / `freeze_audio_encoder` true,
    /// docs/reference.md#sft-recipe).
    pub fn sft() -> Self {
        TrainableParts { llm: true, vision: false, audio: false }
    }

    /// From a recipe's freeze flags.
    pub fn from_freeze(freeze_vision: bool, freeze_audio: bool) -> Self {
        TrainableParts { llm: true, vision: !freeze_vision, audio: !freeze_audio }
    }

    /// Whether the tensor `name` (HF name without the `thinker.` prefix) trains.
    pub fn wants(&self, name: &str) -> bool {
        if name.starts_with("visual.") {
            self.vision
        } else if name.starts_with("audio_tower.") {
            self.audio
        } else {
            self.llm
        }
    }
}
