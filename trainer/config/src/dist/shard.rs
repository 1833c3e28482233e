//! Splitting work over ranks, the same way on every rank from the same inputs: whole GRPO
//! groups balanced by expected tokens ([`shard_groups`]) and whole tensors balanced by size for
//! ZeRO-1 ([`partition`]). Pure arithmetic, shared by the runtime and the dry run's plan.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ShardError {
    #[error("a world of 0 ranks cannot train")]
    EmptyWorld,
}

/// Which groups each rank trains on and the expected tokens it gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardPlan {
    /// Per rank, the group indices in increasing order.
    pub groups: Vec<Vec<usize>>,
    /// Per rank, the sum of its groups' expected tokens.
    pub tokens: Vec<u64>,
}

impl ShardPlan {
    /// Largest rank load over the mean load (1.0 = perfectly balanced; 0 tokens gives 1.0).
    pub fn imbalance(&self) -> f64 {
        let total: u64 = self.tokens.iter().sum();
        if total == 0 || self.tokens.is_empty() {
            return 1.0;
        }
        let max = self.tokens.iter().copied().max().unwrap_or(0);
        max as f64 * self.tokens.len() as f64 / total as f64
    }
}

/// Give whole groups to ranks balancing `group_tokens` (expected tokens per group, e.g. group
/// size × (prompt + expected response length)). Longest group first to the least-loaded rank
/// (ties: lower rank); deterministic, so every rank can compute it locally. Ranks may get no
/// group when there are fewer groups than ranks; they still join every collective.
pub fn shard_groups(group_tokens: &[u64], world: u32) -> Result<ShardPlan, ShardError> {
    if world == 0 {
        return Err(ShardError::EmptyWorld);
    }
    let world = world as usize;
    let mut order: Vec<usize> = (0..group_tokens.len()).collect();
    order.sort_by(|&a, &b| group_tokens[b].cmp(&group_tokens[a]).then(a.cmp(&b)));
    let mut plan = ShardPlan { groups: vec![Vec::new(); world], tokens: vec![0; world] };
    for g in order {
        let (rank, _) =
            plan.tokens.iter().enumerate().min_by(|a, b| a.1.cmp(b.1).then(a.0.cmp(&b.0))).unwrap_or((0, &0));
        plan.groups[rank].push(g);
        plan.tokens[rank] += group_tokens[g];
    }
    plan.groups.iter_mut().for_each(|g| g.sort_unstable());
    Ok(plan)
}

/// Owner rank per tensor, balancing element counts (longest first to the least-loaded rank).
pub fn partition(numels: &[usize], world: u32) -> Result<Vec<u32>, ShardError> {
    let sizes: Vec<u64> = numels.iter().map(|&n| n as u64).collect();
    let plan = shard_groups(&sizes, world)?;
    let mut owners = vec![0u32; numels.len()];
    for (rank, tensors) in plan.groups.iter().enumerate() {
        for &t in tensors {
            owners[t] = rank as u32;
        }
    }
    Ok(owners)
}
