//! How many rows of an SFT stage on files will be dropped for exceeding `max_seq_length`,
//! estimated by the dry run on an evenly spread sample of lines: each sampled line becomes the
//! row `omnirl train` would build (chat template, media decoded by the rollout processors at the
//! stage's budgets; `rollout::sft`), and its exact length is compared with the limit. Rows are
//! encoded with the tokenizer the runner uses (`run::model::encoder_for`); a random
//! initialisation trains its tokenizer when the run starts, so there the count waits for the
//! stage (which reports the exact number at its end).
//!
//! Left out: checking every line (decoding the media of tens of thousands of lines is a
//! training-time cost, not a dry run's).

use crate::dry_run::RowLengths;
use crate::recipe::resolved::{ModelSource, ResolvedRecipe, ResolvedStage, SftSource, SftStage};
use crate::run::model::encoder_for;
use crate::run::sft_rows::SftFiles;
use rayon::prelude::*;
use rollout::sft::{MediaBudgets, sft_example};

/// Lines sampled per SFT stage.
pub const SAMPLE_LINES: usize = 16;

/// The estimate for `stage` (`None` when it is not an SFT stage on files or its tokenizer is
/// not known yet); `Err` names a line that could not be turned into a row.
pub fn row_lengths(stage: &ResolvedStage, recipe: &ResolvedRecipe) -> Result<Option<RowLengths>, String> {
    let ResolvedStage::Sft(sft) = stage else { return Ok(None) };
    let SftSource::Files(files) = &sft.data.source else { return Ok(None) };
    let Some(ModelSource::Checkpoint(dir)) = recipe.defining_source(stage) else { return Ok(None) };
    // The runner's encoder for this stage; a model it cannot find one for is reported elsewhere.
    let Ok((encoder, _)) = encoder_for(dir, stage.model_ref().tokenizer.as_deref()) else { return Ok(None) };
    let stage: &SftStage = sft;
    let lines =
        SftFiles::index(files, stage.data.media_root.as_deref(), stage.data.max_samples).map_err(|e| e.to_string())?;
    if lines.is_empty() {
        return Ok(None);
    }
    let n = lines.len();
    let picks: Vec<usize> = (0..SAMPLE_LINES.min(n)).map(|k| k * n / SAMPLE_LINES.min(n)).collect();
    let budgets = MediaBudgets { image: stage.preprocess.image_sizing(), video: stage.preprocess.video_sampling() };
    let lengths: Vec<usize> = picks
        .par_iter()
        .map(|&i| {
            let turn = lines.turn(i).map_err(|e| e.to_string())?;
            let ex = sft_example(&turn, &*encoder, &budgets).map_err(|e| format!("{}: {e}", lines.location(i)))?;
            Ok(ex.prompt_ids.len() + ex.target_ids.len())
        })
        .collect::<Result<_, String>>()?;
    let limit = stage.schedule.max_seq_length;
    Ok(Some(RowLengths {
        lines: n,
        sampled: lengths.len(),
        over_max_seq_length: lengths.iter().filter(|&&l| l > limit as usize).count(),
        longest: lengths.iter().copied().max().unwrap_or(0),
        max_seq_length: limit,
    }))
}
