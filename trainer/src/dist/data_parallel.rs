//! Data parallelism over a [`Communicator`]: which episodes each rank trains on, identical
//! initial weights, and gradient all-reduce in buckets.
//!
//! - [`shard_groups`] gives whole GRPO groups to ranks (so group means/stds, and therefore the
//!   advantages, are computed exactly as in one process), balancing the expected tokens with a
//!   deterministic longest-first greedy: every rank computes the same plan from the same inputs.
//! - [`broadcast_parameters`] copies rank 0's weights to every rank before training.
//! - [`all_reduce_gradients`] sums (or averages) every parameter's gradient across ranks through
//!   flat fp32 buckets of at most `bucket_elems` values, so few large collectives are issued.
//! - [`DataParallelSync`] is the learners' [`GradientSync`] over a communicator: counters summed,
//!   gradients all-reduced in buckets, then the replicated AdamW or a ZeRO-1 optimizer steps.
//!   A data-parallel step is the learner's own step through it (`SftLearner::step`,
//!   `RlLearner::step`): the learner normalises by the global token and row counts,
//!   so its update equals a one-process step over the union of the ranks' rows.
//!
//! Left out: overlapping communication with the backward pass (buckets are reduced after the
//! backward; a hook-based overlap needs autograd hooks tch does not expose).

use super::comm::{CommBuf, CommError, Communicator};
use crate::learner::{AdamW, GradientSync, LearnerError, StepReport};
use tch::{Kind, Tensor};
pub use trainer_config::dist::shard::{ShardError, ShardPlan, shard_groups};

/// Default gradient bucket: 25 M fp32 values (100 MB), as in PyTorch DDP's order of magnitude.
pub const DEFAULT_BUCKET_ELEMS: usize = 25 << 20;

#[derive(Debug, thiserror::Error)]
pub enum DataParallelError {
    #[error(transparent)]
    Shard(#[from] ShardError),
    #[error(transparent)]
    Comm(#[from] CommError),
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

/// Expected tokens of a GRPO group: `group_size` rollouts of `prompt_tokens` plus the expected
/// response length (e.g. the running mean of recent responses, or the max-tokens budget).
pub fn group_expected_tokens(prompt_tokens: usize, expected_response: f64, group_size: usize) -> u64 {
    (group_size as f64 * (prompt_tokens as f64 + expected_response.max(0.0))).round() as u64
}

/// Overwrite every rank's parameters with rank 0's.
pub fn broadcast_parameters<C: Communicator + ?Sized>(
    comm: &C,
    params: &[(String, Tensor)],
) -> Result<(), DataParallelError> {
    for (_, p) in params {
        let mut p = p.shallow_clone();
        comm.broadcast(&mut p, 0)?;
    }
    Ok(())
}

/// Sum (or, with `average`, average) every parameter's gradient over ranks, through flat fp32
/// buckets of at most `bucket_elems` values (a larger tensor is its own bucket). A parameter
/// with no gradient on this rank contributes zeros (and gets a zero gradient), so ranks that
/// trained on nothing still take part. Returns, per parameter, whether some rank had a
/// gradient for it: one that none had must not be updated (torch skips a `None` gradient, so
/// no decay and no momentum step), which the optimizers are told.
pub fn all_reduce_gradients<C: Communicator + ?Sized>(
    comm: &C,
    params: &[(String, Tensor)],
    bucket_elems: usize,
    average: bool,
) -> Result<Vec<bool>, DataParallelError> {
    let mut had: Vec<f64> = params.iter().map(|(_, p)| f64::from(u8::from(p.grad().defined()))).collect();
    if comm.world_size() == 1 && !average {
        return Ok(had.into_iter().map(|h| h > 0.0).collect());
    }
    comm.all_reduce_sum_buf(CommBuf::F64(&mut had))?;
    let mut grads = Vec::with_capacity(params.len());
    for (_, p) in params {
        let mut g = p.grad();
        if !g.defined() {
            p.f_mul_scalar(0.0)?.f_sum(Kind::Float)?.f_backward()?;
            g = p.grad();
        }
        grads.push(g);
    }
    let scale = if average { 1.0 / f64::from(comm.world_size()) } else { 1.0 };
    let mut start = 0;
    while start < grads.len() {
        let mut end = start + 1;
        let mut elems = grads[start].numel();
        while end < grads.len() && elems + grads[end].numel() <= bucket_elems {
            elems += grads[end].numel();
            end += 1;
        }
        reduce_bucket(comm, &grads[start..end], scale)?;
        start = end;
    }
    Ok(had.into_iter().map(|h| h > 0.0).collect())
}

fn reduce_bucket<C: Communicator + ?Sized>(comm: &C, grads: &[Tensor], scale: f64) -> Result<(), DataParallelError> {
    let mut flat = Vec::with_capacity(grads.iter().map(Tensor::numel).sum());
    for g in grads {
        let v = g.f_detach()?.f_to_device(tch::Device::Cpu)?.f_to_kind(Kind::Float)?.f_contiguous()?.f_reshape([-1])?;
        flat.extend(Vec::<f32>::try_from(&v)?);
    }
    comm.all_reduce_sum_buf(CommBuf::F32(&mut flat))?;
    let mut offset = 0;
    for g in grads {
        let n = g.numel();
        let t = Tensor::f_from_slice(&flat[offset..offset + n])?
            .f_reshape(g.size())?
            .f_mul_scalar(scale)?
            .f_to_kind(g.kind())?
            .f_to_device(g.device())?;
        let mut g = g.shallow_clone();
        tch::no_grad(|| g.f_copy_(&t))?;
        offset += n;
    }
    Ok(())
}

/// The learners' gradient synchronisation over `comm`: counters summed, gradients summed in
/// buckets of `bucket_elems`, then the learner's replicated AdamW steps, or `zero1` when the
/// optimizer state is sharded (the learner's own AdamW then holds no tensors).
pub struct DataParallelSync<'c> {
    pub comm: &'c dyn Communicator,
    pub bucket_elems: usize,
    pub zero1: Option<super::zero1::Zero1>,
}

impl std::fmt::Debug for DataParallelSync<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DataParallelSync({} of {}, zero1: {})",
            self.comm.rank(),
            self.comm.world_size(),
            self.zero1.is_some()
        )
    }
}

impl DataParallelSync<'_> {
    fn fail(e: impl std::fmt::Display) -> LearnerError {
        LearnerError::Sync(e.to_string())
    }
}

impl GradientSync for DataParallelSync<'_> {
    fn world_size(&self) -> u32 {
        self.comm.world_size()
    }

    fn sum_counts(&mut self, values: &mut [f64]) -> Result<(), LearnerError> {
        if self.comm.world_size() > 1 && !values.is_empty() {
            self.comm.all_reduce_sum_buf(CommBuf::F64(values)).map_err(Self::fail)?;
        }
        Ok(())
    }

    fn step(&mut self, optimizer: &mut AdamW, params: &[(String, Tensor)]) -> Result<StepReport, LearnerError> {
        let live = all_reduce_gradients(self.comm, params, self.bucket_elems, false).map_err(Self::fail)?;
        let idle: std::collections::HashSet<&str> =
            params.iter().zip(&live).filter(|(_, l)| !**l).map(|((n, _), _)| n.as_str()).collect();
        let updates = |name: &str| !idle.contains(name);
        match self.zero1.as_mut() {
            Some(z) => z.step(self.comm, &updates).map_err(Self::fail),
            None => Ok(optimizer.step_where(&updates)?),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::comm::SingleProcess;

    #[test]
    fn shard_groups_table() {
        struct Case {
            tokens: &'static [u64],
            world: u32,
            groups: &'static [&'static [usize]],
            loads: &'static [u64],
        }
        let cases = [
            Case { tokens: &[], world: 2, groups: &[&[], &[]], loads: &[0, 0] },
            Case { tokens: &[5], world: 3, groups: &[&[0], &[], &[]], loads: &[5, 0, 0] },
            Case { tokens: &[10, 10, 10, 10], world: 2, groups: &[&[0, 2], &[1, 3]], loads: &[20, 20] },
            Case { tokens: &[1, 9, 4, 6], world: 2, groups: &[&[0, 1], &[2, 3]], loads: &[10, 10] },
            Case { tokens: &[8, 7, 6, 5, 4], world: 2, groups: &[&[0, 3, 4], &[1, 2]], loads: &[17, 13] },
            Case { tokens: &[3, 3, 3], world: 1, groups: &[&[0, 1, 2]], loads: &[9] },
            Case { tokens: &[100, 1, 1, 1], world: 2, groups: &[&[0], &[1, 2, 3]], loads: &[100, 3] },
        ];
        for (i, c) in cases.iter().enumerate() {
            let plan = shard_groups(c.tokens, c.world).unwrap();
            let want: Vec<Vec<usize>> = c.groups.iter().map(|g| g.to_vec()).collect();
            assert_eq!(plan.groups, want, "case {i}");
            assert_eq!(plan.tokens, c.loads, "case {i}");
        }
        assert!(matches!(shard_groups(&[1], 0), Err(ShardError::EmptyWorld)));
    }

    #[test]
    fn every_group_lands_on_exactly_one_rank_and_balance_is_bounded() {
        let tokens: Vec<u64> = (0..37u64).map(|i| 50 + (i * 7919) % 400).collect();
        for world in 1..=8 {
            let plan = shard_groups(&tokens, world).unwrap();
            let mut all: Vec<usize> = plan.groups.concat();
            all.sort_unstable();
            assert_eq!(all, (0..tokens.len()).collect::<Vec<_>>());
            // LPT bound: max load ≤ mean + largest item.
            let mean = tokens.iter().sum::<u64>() as f64 / f64::from(world);
            let max = *plan.tokens.iter().max().unwrap() as f64;
            assert!(max <= mean + 450.0, "world {world}: {max} vs {mean}");
            assert!(plan.imbalance() >= 1.0);
        }
    }

    #[test]
    fn expected_tokens_of_a_group() {
        assert_eq!(group_expected_tokens(100, 50.0, 8), 1200);
        assert_eq!(group_expected_tokens(10, -3.0, 2), 20);
    }

    #[test]
    fn single_process_gradient_reduce_keeps_or_averages() {
        let p = Tensor::from_slice(&[1.0f32, 2.0]).set_requires_grad(true);
        let q = Tensor::from_slice(&[3.0f32]).set_requires_grad(true);
        p.sum(Kind::Float).backward();
        let params = vec![("p".to_string(), p.shallow_clone()), ("q".to_string(), q.shallow_clone())];
        all_reduce_gradients(&SingleProcess, &params, 1, true).unwrap();
        assert_eq!(Vec::<f32>::try_from(p.grad()).unwrap(), vec![1.0, 1.0]);
        // q had no gradient: it gets zeros.
        assert_eq!(Vec::<f32>::try_from(q.grad()).unwrap(), vec![0.0]);
        broadcast_parameters(&SingleProcess, &params).unwrap();
    }
}
