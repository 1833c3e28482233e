//! Rank discovery from the environment a launcher leaves behind.
//!
//! Sources, in priority order (the first one present wins; the others are reported as
//! ignored, since e.g. torchrun under srun legitimately disagrees with Slurm's task ids):
//! 1. torchrun-style `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`;
//! 2. OpenMPI `OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE}`;
//! 3. PMI (MPICH, Intel MPI, hydra) `PMI_RANK`, `PMI_SIZE`, `MPI_LOCALRANKID`/`PMI_LOCAL_RANK`, `MPI_LOCALNRANKS`/`PMI_LOCAL_SIZE`;
//! 4. Slurm `SLURM_PROCID`, `SLURM_NTASKS` (or `SLURM_STEP_NUM_TASKS`), `SLURM_LOCALID`, `SLURM_NTASKS_PER_NODE`.
//!
//! With none present this is a single process. The GPU for a rank is the `local_rank`-th
//! entry of GPU_IDS (the reference's variable), else of CUDA_VISIBLE_DEVICES, else device
//! `local_rank`. Nothing here touches a GPU or the network.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Launcher {
    Single,
    Env,
    OpenMpi,
    Pmi,
    Slurm,
}

impl Launcher {
    pub fn describe(self) -> &'static str {
        match self {
            Launcher::Single => "single process",
            Launcher::Env => "RANK/WORLD_SIZE environment (torchrun-style)",
            Launcher::OpenMpi => "OpenMPI (mpirun)",
            Launcher::Pmi => "PMI (MPICH / Intel MPI)",
            Launcher::Slurm => "Slurm (srun)",
        }
    }
}

/// What this process is in the job.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RankInfo {
    pub world_size: u32,
    pub rank: u32,
    pub local_rank: u32,
    pub local_world_size: u32,
    /// world_size / local_world_size when that divides evenly.
    pub nnodes: Option<u32>,
    pub launcher: Launcher,
    pub master_addr: Option<String>,
    pub master_port: Option<u16>,
    /// Physical GPU index this rank should use, if the launch says so.
    pub gpu_index: Option<u32>,
    /// Which variable chose the GPU (GPU_IDS, CUDA_VISIBLE_DEVICES or local rank).
    pub gpu_source: &'static str,
    /// Other launcher variables that were present but not used.
    pub ignored_sources: Vec<Launcher>,
}

/// A variable that could not be used, with the reason.
#[derive(Debug, Clone, PartialEq)]
pub struct RankProblem {
    pub variable: String,
    pub message: String,
}

struct Source {
    launcher: Launcher,
    rank: &'static [&'static str],
    size: &'static [&'static str],
    local_rank: &'static [&'static str],
    local_size: &'static [&'static str],
}

const SOURCES: &[Source] = &[
    Source {
        launcher: Launcher::Env,
        rank: &["RANK"],
        size: &["WORLD_SIZE"],
        local_rank: &["LOCAL_RANK"],
        local_size: &["LOCAL_WORLD_SIZE"],
    },
    Source {
        launcher: Launcher::OpenMpi,
        rank: &["OMPI_COMM_WORLD_RANK"],
        size: &["OMPI_COMM_WORLD_SIZE"],
        local_rank: &["OMPI_COMM_WORLD_LOCAL_RANK"],
        local_size: &["OMPI_COMM_WORLD_LOCAL_SIZE"],
    },
    Source {
        launcher: Launcher::Pmi,
        rank: &["PMI_RANK"],
        size: &["PMI_SIZE"],
        local_rank: &["MPI_LOCALRANKID", "PMI_LOCAL_RANK"],
        local_size: &["MPI_LOCALNRANKS", "PMI_LOCAL_SIZE"],
    },
    Source {
        launcher: Launcher::Slurm,
        rank: &["SLURM_PROCID"],
        size: &["SLURM_NTASKS", "SLURM_STEP_NUM_TASKS"],
        local_rank: &["SLURM_LOCALID"],
        local_size: &["SLURM_NTASKS_PER_NODE"],
    },
];

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn first<'v>(env: Env, vars: &'v [&'v str]) -> Option<(&'v str, String)> {
    vars.iter().find_map(|v| env(v).filter(|s| !s.trim().is_empty()).map(|s| (*v, s)))
}

fn parse_u32(var: &str, text: &str, problems: &mut Vec<RankProblem>) -> Option<u32> {
    // Slurm writes per-node task counts like "4(x2)"; the leading count is what we need.
    let head = text.trim().split(['(', ',']).next().unwrap_or("");
    match head.parse::<u32>() {
        Ok(v) => Some(v),
        Err(_) => {
            problems.push(RankProblem {
                variable: var.into(),
                message: format!("expected a non-negative integer, found {text:?}"),
            });
            None
        }
    }
}

/// Reads the rank layout from `env`. Problems are returned beside the best-effort result so
/// the dry run can show both.
pub fn discover(env: Env) -> (RankInfo, Vec<RankProblem>) {
    let mut problems = Vec::new();
    let present: Vec<&Source> =
        SOURCES.iter().filter(|s| first(env, s.rank).is_some() || first(env, s.size).is_some()).collect();
    let mut info = RankInfo {
        world_size: 1,
        rank: 0,
        local_rank: 0,
        local_world_size: 1,
        nnodes: Some(1),
        launcher: Launcher::Single,
        master_addr: env("MASTER_ADDR").filter(|s| !s.is_empty()),
        master_port: None,
        gpu_index: None,
        gpu_source: "local rank",
        ignored_sources: present.iter().skip(1).map(|s| s.launcher).collect(),
    };
    if let Some(port) = env("MASTER_PORT").filter(|s| !s.is_empty()) {
        match port.trim().parse::<u16>() {
            Ok(p) if p > 0 => info.master_port = Some(p),
            _ => problems.push(RankProblem {
                variable: "MASTER_PORT".into(),
                message: format!("expected a port in 1..65535, found {port:?}"),
            }),
        }
    }
    if let Some(source) = present.first() {
        read_launch(env, source, &mut info, &mut problems);
    }
    assign_gpu(env, &mut info, &mut problems);
    (info, problems)
}

/// World size, rank, local layout and rendezvous from the launcher `source` that set them.
fn read_launch(env: Env, source: &Source, info: &mut RankInfo, problems: &mut Vec<RankProblem>) {
    info.launcher = source.launcher;
    let size = read_u32(env, source.size, problems);
    let rank = read_u32(env, source.rank, problems);
    match (&size, &rank) {
        (None, Some((var, _))) => problems.push(RankProblem {
            variable: source.size[0].into(),
            message: format!("{var} is set but {} is not; a launch needs both", source.size[0]),
        }),
        (Some((var, _)), None) => problems.push(RankProblem {
            variable: source.rank[0].into(),
            message: format!("{var} is set but {} is not; a launch needs both", source.rank[0]),
        }),
        _ => {}
    }
    if let Some((var, 0)) = &size {
        problems.push(RankProblem { variable: var.clone(), message: "world size must be at least 1".into() });
    }
    info.world_size = size.as_ref().map_or(1, |(_, v)| (*v).max(1));
    info.rank = rank.as_ref().map_or(0, |(_, v)| *v);
    if let Some((var, r)) = &rank
        && *r >= info.world_size
    {
        problems.push(RankProblem {
            variable: var.clone(),
            message: format!("rank {r} is not below the world size {}", info.world_size),
        });
    }
    read_local_layout(env, source, info, problems);
}

/// A launcher variable as a number, with the variable's name.
fn read_u32(env: Env, vars: &[&str], problems: &mut Vec<RankProblem>) -> Option<(String, u32)> {
    first(env, vars).and_then(|(var, text)| parse_u32(var, &text, problems).map(|v| (var.to_string(), v)))
}

/// Ranks per node and the local rank (after the world size and rank), the node count, and
/// the rendezvous an env-variable launch needs.
fn read_local_layout(env: Env, source: &Source, info: &mut RankInfo, problems: &mut Vec<RankProblem>) {
    let local_size = read_u32(env, source.local_size, problems);
    let local_rank = read_u32(env, source.local_rank, problems);
    info.local_world_size = local_size.as_ref().map_or(info.world_size, |(_, v)| (*v).max(1));
    // Without a local rank, a single-node launch has local rank = rank.
    info.local_rank =
        local_rank.as_ref().map_or(if info.local_world_size == info.world_size { info.rank } else { 0 }, |(_, v)| *v);
    if local_rank.is_none() && info.local_world_size != info.world_size {
        problems.push(RankProblem {
            variable: source.local_rank[0].into(),
            message: "required on multi-node launches (which GPU this rank uses)".into(),
        });
    }
    if let Some((var, lr)) = &local_rank
        && *lr >= info.local_world_size
    {
        problems.push(RankProblem {
            variable: var.clone(),
            message: format!("local rank {lr} is not below the ranks per node {}", info.local_world_size),
        });
    }
    if info.local_world_size > info.world_size {
        problems.push(RankProblem {
            variable: source.local_size[0].into(),
            message: format!("{} ranks per node exceeds the world size {}", info.local_world_size, info.world_size),
        });
    }
    info.nnodes =
        info.world_size.is_multiple_of(info.local_world_size).then(|| info.world_size / info.local_world_size);
    let needs_rendezvous = info.launcher == Launcher::Env && info.world_size > 1;
    if needs_rendezvous && (info.master_addr.is_none() || info.master_port.is_none()) {
        problems.push(RankProblem {
            variable: "MASTER_ADDR".into(),
            message: "WORLD_SIZE > 1 without MPI needs MASTER_ADDR and MASTER_PORT for the rendezvous".into(),
        });
    }
}

fn assign_gpu(env: Env, info: &mut RankInfo, problems: &mut Vec<RankProblem>) {
    let lists = [("GPU_IDS", env("GPU_IDS")), ("CUDA_VISIBLE_DEVICES", env("CUDA_VISIBLE_DEVICES"))];
    let Some((var, text)) = lists.into_iter().find_map(|(v, t)| t.filter(|t| !t.trim().is_empty()).map(|t| (v, t)))
    else {
        info.gpu_index = Some(info.local_rank);
        return;
    };
    info.gpu_source = var;
    let ids: Vec<&str> = text.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    match ids.get(info.local_rank as usize) {
        // CUDA_VISIBLE_DEVICES renumbers devices: the process sees the chosen one as index
        // `local_rank`. GPU_IDS names physical devices.
        Some(id) if var == "CUDA_VISIBLE_DEVICES" => {
            info.gpu_index = id.parse::<u32>().ok().map(|_| info.local_rank);
        }
        Some(id) => match id.parse::<u32>() {
            Ok(v) => info.gpu_index = Some(v),
            Err(_) => problems
                .push(RankProblem { variable: var.into(), message: format!("`{id}` is not a GPU index in {text:?}") }),
        },
        None => problems.push(RankProblem {
            variable: var.into(),
            message: format!(
                "local rank {} needs entry {} but {var} lists {} device(s): {text:?}",
                info.local_rank,
                info.local_rank,
                ids.len()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(vars: &[(&str, &str)]) -> (RankInfo, Vec<RankProblem>) {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        discover(&move |k: &str| map.get(k).cloned())
    }

    #[test]
    fn sources_in_priority_order() {
        // (variables, launcher, world, rank, local_rank, nnodes)
        type Case<'a> = (&'a [(&'a str, &'a str)], Launcher, u32, u32, u32, Option<u32>);
        let cases: &[Case] = &[
            (&[], Launcher::Single, 1, 0, 0, Some(1)),
            (
                &[
                    ("RANK", "3"),
                    ("WORLD_SIZE", "8"),
                    ("LOCAL_RANK", "3"),
                    ("MASTER_ADDR", "n0"),
                    ("MASTER_PORT", "29500"),
                ],
                Launcher::Env,
                8,
                3,
                3,
                Some(1),
            ),
            (
                &[
                    ("OMPI_COMM_WORLD_RANK", "5"),
                    ("OMPI_COMM_WORLD_SIZE", "16"),
                    ("OMPI_COMM_WORLD_LOCAL_RANK", "5"),
                    ("OMPI_COMM_WORLD_LOCAL_SIZE", "8"),
                ],
                Launcher::OpenMpi,
                16,
                5,
                5,
                Some(2),
            ),
            (
                &[("PMI_RANK", "1"), ("PMI_SIZE", "2"), ("MPI_LOCALRANKID", "1"), ("MPI_LOCALNRANKS", "2")],
                Launcher::Pmi,
                2,
                1,
                1,
                Some(1),
            ),
            (
                &[
                    ("SLURM_PROCID", "9"),
                    ("SLURM_NTASKS", "16"),
                    ("SLURM_LOCALID", "1"),
                    ("SLURM_NTASKS_PER_NODE", "8(x2)"),
                ],
                Launcher::Slurm,
                16,
                9,
                1,
                Some(2),
            ),
            // torchrun inside an srun step: the torchrun variables win.
            (
                &[
                    ("RANK", "10"),
                    ("WORLD_SIZE", "16"),
                    ("LOCAL_RANK", "2"),
                    ("LOCAL_WORLD_SIZE", "8"),
                    ("MASTER_ADDR", "n0"),
                    ("MASTER_PORT", "1234"),
                    ("SLURM_PROCID", "1"),
                    ("SLURM_NTASKS", "2"),
                ],
                Launcher::Env,
                16,
                10,
                2,
                Some(2),
            ),
        ];
        for (vars, launcher, world, rank, local, nnodes) in cases {
            let (info, problems) = run(vars);
            assert!(problems.is_empty(), "{vars:?}: {problems:?}");
            assert_eq!(
                (info.launcher, info.world_size, info.rank, info.local_rank, info.nnodes),
                (*launcher, *world, *rank, *local, *nnodes),
                "{vars:?}"
            );
        }
    }

    #[test]
    fn inconsistent_launches_are_reported() {
        let (_, p) = run(&[("RANK", "4"), ("WORLD_SIZE", "4"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "1")]);
        assert_eq!(p[0].variable, "RANK");
        assert!(p[0].message.contains("rank 4 is not below the world size 4"));
        let (_, p) = run(&[("RANK", "0"), ("WORLD_SIZE", "two")]);
        assert!(p.iter().any(|p| p.variable == "WORLD_SIZE" && p.message.contains("\"two\"")));
        let (_, p) = run(&[("RANK", "0"), ("WORLD_SIZE", "2")]);
        assert!(p.iter().any(|p| p.message.contains("MASTER_ADDR and MASTER_PORT")));
        let (_, p) = run(&[("MASTER_PORT", "99999")]);
        assert_eq!(p[0].variable, "MASTER_PORT");
    }

    #[test]
    fn gpu_follows_gpu_ids_then_visible_devices() {
        let base = [("OMPI_COMM_WORLD_RANK", "1"), ("OMPI_COMM_WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_LOCAL_RANK", "1")];
        let (info, _) = run(&[&base[..], &[("GPU_IDS", "4,6")]].concat());
        assert_eq!((info.gpu_index, info.gpu_source), (Some(6), "GPU_IDS"));
        let (info, _) = run(&[&base[..], &[("CUDA_VISIBLE_DEVICES", "4,6")]].concat());
        assert_eq!((info.gpu_index, info.gpu_source), (Some(1), "CUDA_VISIBLE_DEVICES"));
        let (_, p) = run(&[&base[..], &[("GPU_IDS", "4")]].concat());
        assert!(p[0].message.contains("lists 1 device(s)"), "{p:?}");
    }
}
