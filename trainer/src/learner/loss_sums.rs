//! The RL step's loss metrics: the per-row sums ([`LossSums`]) the learner adds up on the device
//! while it trains, plus the host-side shares of rows whose forward it skipped ([`Accum`]), read
//! once at the end of the step (see `learner::rl`).

use tch::{Kind, Tensor};

/// The sums a step's loss metrics come from, over the tokens it trained on: per row as
/// detached device scalars, then summed over the step (and over ranks) as numbers.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct LossSums<T> {
    /// Σ w·pg, Σ w·kl, Σ w·H: the aggregated losses, summed over optimizer steps.
    pub pg: T,
    pub kl: T,
    pub entropy: T,
    pub tokens: T,
    /// Tokens whose ratio was ε-clipped, and dual-clipped.
    pub clipped: T,
    pub dual_clipped: T,
    /// Σ (old − new) log-prob, verl's `ppo_kl` numerator.
    pub old_minus_new: T,
}

pub(super) const METRICS: usize = 7;

impl<T> LossSums<T> {
    pub fn into_array(self) -> [T; METRICS] {
        let LossSums { pg, kl, entropy, tokens, clipped, dual_clipped, old_minus_new } = self;
        [pg, kl, entropy, tokens, clipped, dual_clipped, old_minus_new]
    }

    pub fn from_array([pg, kl, entropy, tokens, clipped, dual_clipped, old_minus_new]: [T; METRICS]) -> Self {
        LossSums { pg, kl, entropy, tokens, clipped, dual_clipped, old_minus_new }
    }
}

/// [`LossSums`] kept on the device as one `[METRICS]` tensor, so the update never waits on a
/// host read; read once at the end of the step.
#[derive(Debug, Default)]
pub(super) struct Accum {
    sums: Option<Tensor>,
    pub forward_tokens: usize,
    /// Loss tokens and `Σ w·H` of the rows whose forward was skipped (host numbers).
    pub skipped_tokens: f64,
    pub skipped_entropy: f64,
}

impl Accum {
    pub fn add(&mut self, row: LossSums<Tensor>) -> Result<(), tch::TchError> {
        let v = Tensor::f_stack(&row.into_array(), 0)?;
        self.sums = Some(match self.sums.take() {
            Some(s) => s.f_add(&v)?,
            None => v,
        });
        Ok(())
    }

    pub fn values(&self) -> Result<[f64; METRICS], tch::TchError> {
        // The order of `LossSums::into_array`.
        let mut out = [0.0; METRICS];
        if let Some(s) = &self.sums {
            let v = Vec::<f64>::try_from(s.f_to_kind(Kind::Double)?.f_to_device(tch::Device::Cpu)?)?;
            out.iter_mut().zip(v).for_each(|(o, x)| *o = x);
        }
        let mut sums = LossSums::from_array(out);
        sums.entropy += self.skipped_entropy;
        sums.tokens += self.skipped_tokens;
        Ok(sums.into_array())
    }
}
