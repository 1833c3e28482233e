//! The communicator abstraction of the distributed runtime.
//!
//! A [`Communicator`] offers the collectives data parallelism needs (all-reduce sum/avg,
//! broadcast, all-gather, reduce-scatter, barrier). Backends implement them on flat host
//! buffers ([`CommBuf`], f32 or f64); the tensor-level methods are provided on top and copy a
//! tensor through a `Vec` (bf16/f16 travel as f32, integers as f64, and are cast back), so no backend
//! needs `unsafe` access to tensor memory. [`SingleProcess`] is the world-size-1 no-op backend.
//!
//! Left out: asynchronous collectives and sub-communicators (data parallelism over one world
//! needs neither), and device-side buffers (a CUDA backend overrides the tensor methods).

use tch::{Device, Kind, Tensor};

/// Why a collective failed.
#[derive(Debug, thiserror::Error)]
pub enum CommError {
    #[error("collective {op}: {message}")]
    Shape { op: &'static str, message: String },
    #[error("collective {op}: the root rank {root} is outside the world of {world}")]
    Root { op: &'static str, root: u32, world: u32 },
    #[error("tensor conversion for a collective: {0}")]
    Tensor(#[from] tch::TchError),
    #[error("{backend} backend: {message}")]
    Backend { backend: &'static str, message: String },
}

/// A flat host buffer a backend reduces or moves.
#[derive(Debug)]
pub enum CommBuf<'a> {
    F32(&'a mut [f32]),
    F64(&'a mut [f64]),
}

impl CommBuf<'_> {
    pub fn len(&self) -> usize {
        match self {
            CommBuf::F32(b) => b.len(),
            CommBuf::F64(b) => b.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A read-only flat host buffer (the send side of all-gather / reduce-scatter).
#[derive(Debug, Clone, Copy)]
pub enum CommSrc<'a> {
    F32(&'a [f32]),
    F64(&'a [f64]),
}

/// Collectives over one world of ranks. Every rank must call the same collectives in the same
/// order with buffers of the same length; a backend that can tell reports a mismatch as an error.
pub trait Communicator {
    fn rank(&self) -> u32;
    fn world_size(&self) -> u32;
    /// "single", "mpi", "nccl".
    fn backend(&self) -> &'static str;

    /// Element-wise sum over all ranks, in place.
    fn all_reduce_sum_buf(&self, buf: CommBuf<'_>) -> Result<(), CommError>;
    /// Overwrite `buf` on every rank with `root`'s values.
    fn broadcast_buf(&self, buf: CommBuf<'_>, root: u32) -> Result<(), CommError>;
    /// `recv` (world_size * send.len()) gets every rank's `send`, in rank order.
    fn all_gather_buf(&self, send: CommSrc<'_>, recv: CommBuf<'_>) -> Result<(), CommError>;
    /// `send` (world_size * recv.len()) is summed over ranks; rank r keeps block r in `recv`.
    fn reduce_scatter_sum_buf(&self, send: CommSrc<'_>, recv: CommBuf<'_>) -> Result<(), CommError>;
    fn barrier(&self) -> Result<(), CommError>;

    /// Sum `t` over ranks in place (any float kind; CPU tensors).
    fn all_reduce_sum(&self, t: &mut Tensor) -> Result<(), CommError> {
        in_place(t, |buf| self.all_reduce_sum_buf(buf))
    }

    /// Average `t` over ranks in place.
    fn all_reduce_avg(&self, t: &mut Tensor) -> Result<(), CommError> {
        self.all_reduce_sum(t)?;
        if self.world_size() > 1 {
            let _ = tch::no_grad(|| t.f_div_scalar_(f64::from(self.world_size())))?;
        }
        Ok(())
    }

    /// Overwrite `t` with `root`'s tensor.
    fn broadcast(&self, t: &mut Tensor, root: u32) -> Result<(), CommError> {
        check_root("broadcast", root, self.world_size())?;
        in_place(t, |buf| self.broadcast_buf(buf, root))
    }

    /// Every rank's `t` concatenated along a new leading dimension: `[world, ..t.size()]`.
    fn all_gather(&self, t: &Tensor) -> Result<Tensor, CommError> {
        let world = i64::from(self.world_size());
        let mut shape = vec![world];
        shape.extend(t.size());
        let (kind, wire) = wire_kind(t.kind());
        let src = host(t, wire)?;
        let out = match wire {
            Kind::Double => {
                let s = Vec::<f64>::try_from(&src)?;
                let mut r = vec![0f64; s.len() * world as usize];
                self.all_gather_buf(CommSrc::F64(&s), CommBuf::F64(&mut r))?;
                Tensor::f_from_slice(&r)?
            }
            _ => {
                let s = Vec::<f32>::try_from(&src)?;
                let mut r = vec![0f32; s.len() * world as usize];
                self.all_gather_buf(CommSrc::F32(&s), CommBuf::F32(&mut r))?;
                Tensor::f_from_slice(&r)?
            }
        };
        Ok(out.f_reshape(&shape)?.f_to_kind(kind)?.f_to_device(t.device())?)
    }

    /// Sum `t` (flattened; numel divisible by the world size) over ranks and return this rank's
    /// block of the sum (1-D, numel / world_size elements).
    fn reduce_scatter_sum(&self, t: &Tensor) -> Result<Tensor, CommError> {
        let world = self.world_size() as usize;
        let n = t.numel();
        if !n.is_multiple_of(world) {
            return Err(CommError::Shape {
                op: "reduce_scatter",
                message: format!("{n} elements do not split evenly over {world} ranks"),
            });
        }
        let (kind, wire) = wire_kind(t.kind());
        let src = host(t, wire)?;
        let out = match wire {
            Kind::Double => {
                let s = Vec::<f64>::try_from(&src)?;
                let mut r = vec![0f64; n / world];
                self.reduce_scatter_sum_buf(CommSrc::F64(&s), CommBuf::F64(&mut r))?;
                Tensor::f_from_slice(&r)?
            }
            _ => {
                let s = Vec::<f32>::try_from(&src)?;
                let mut r = vec![0f32; n / world];
                self.reduce_scatter_sum_buf(CommSrc::F32(&s), CommBuf::F32(&mut r))?;
                Tensor::f_from_slice(&r)?
            }
        };
        Ok(out.f_to_kind(kind)?.f_to_device(t.device())?)
    }
}

pub(crate) fn check_root(op: &'static str, root: u32, world: u32) -> Result<(), CommError> {
    if root >= world { Err(CommError::Root { op, root, world }) } else { Ok(()) }
}

/// The kind a tensor travels as: f32/f16/bf16 as f32; f64 and integer kinds as f64 (exact for
/// integers up to 2^53).
fn wire_kind(kind: Kind) -> (Kind, Kind) {
    match kind {
        Kind::Float | Kind::Half | Kind::BFloat16 => (kind, Kind::Float),
        _ => (kind, Kind::Double),
    }
}

/// A flat, contiguous CPU copy of `t` in `wire` kind (no autograd history).
fn host(t: &Tensor, wire: Kind) -> Result<Tensor, tch::TchError> {
    t.f_detach()?.f_to_device(Device::Cpu)?.f_to_kind(wire)?.f_contiguous()?.f_reshape([-1])
}

/// Run an in-place buffer collective on `t` and copy the result back into it.
fn in_place(t: &mut Tensor, op: impl FnOnce(CommBuf<'_>) -> Result<(), CommError>) -> Result<(), CommError> {
    let (_, wire) = wire_kind(t.kind());
    let src = host(t, wire)?;
    let result = match wire {
        Kind::Double => {
            let mut v = Vec::<f64>::try_from(&src)?;
            op(CommBuf::F64(&mut v))?;
            Tensor::f_from_slice(&v)?
        }
        _ => {
            let mut v = Vec::<f32>::try_from(&src)?;
            op(CommBuf::F32(&mut v))?;
            Tensor::f_from_slice(&v)?
        }
    };
    let shaped = result.f_reshape(t.size())?;
    tch::no_grad(|| t.f_copy_(&shaped))?;
    Ok(())
}

/// Bytes per f64 on the wire: 6 bytes (< 2^48) are exact in an f64's 53-bit mantissa.
const BYTES_PER_F64: usize = 6;

fn pack_bytes(bytes: &[u8], words: usize) -> Vec<f64> {
    let mut out = vec![0f64; words];
    for (w, chunk) in out.iter_mut().zip(bytes.chunks(BYTES_PER_F64)) {
        let mut v = 0u64;
        for (k, &b) in chunk.iter().enumerate() {
            v |= u64::from(b) << (8 * k);
        }
        *w = v as f64;
    }
    out
}

fn unpack_bytes(words: &[f64], len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(words.len() * BYTES_PER_F64);
    for &w in words {
        let v = w as u64;
        out.extend((0..BYTES_PER_F64).map(|k| ((v >> (8 * k)) & 0xff) as u8));
    }
    out.truncate(len);
    out
}

/// `root`'s bytes on every rank (small messages: paths, JSON), through f64 buffers.
pub fn broadcast_bytes<C: Communicator + ?Sized>(comm: &C, bytes: &[u8], root: u32) -> Result<Vec<u8>, CommError> {
    check_root("broadcast", root, comm.world_size())?;
    if comm.world_size() == 1 {
        return Ok(bytes.to_vec());
    }
    let mut len = [bytes.len() as f64];
    comm.broadcast_buf(CommBuf::F64(&mut len), root)?;
    let len = len[0] as usize;
    let mut words = pack_bytes(bytes, len.div_ceil(BYTES_PER_F64));
    comm.broadcast_buf(CommBuf::F64(&mut words), root)?;
    Ok(unpack_bytes(&words, len))
}

/// Every rank's bytes, in rank order (small messages), through f64 buffers.
pub fn all_gather_bytes<C: Communicator + ?Sized>(comm: &C, bytes: &[u8]) -> Result<Vec<Vec<u8>>, CommError> {
    let world = comm.world_size() as usize;
    let mut lens = vec![0f64; world];
    comm.all_gather_buf(CommSrc::F64(&[bytes.len() as f64]), CommBuf::F64(&mut lens))?;
    let words = lens.iter().map(|&l| (l as usize).div_ceil(BYTES_PER_F64)).max().unwrap_or(0);
    let send = pack_bytes(bytes, words);
    let mut recv = vec![0f64; words * world];
    comm.all_gather_buf(CommSrc::F64(&send), CommBuf::F64(&mut recv))?;
    Ok(lens.iter().enumerate().map(|(r, &l)| unpack_bytes(&recv[r * words..(r + 1) * words], l as usize)).collect())
}

/// World size 1: every collective is the identity (all-gather and reduce-scatter copy).
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleProcess;

impl Communicator for SingleProcess {
    fn rank(&self) -> u32 {
        0
    }
    fn world_size(&self) -> u32 {
        1
    }
    fn backend(&self) -> &'static str {
        "single"
    }
    fn all_reduce_sum_buf(&self, _buf: CommBuf<'_>) -> Result<(), CommError> {
        Ok(())
    }
    fn broadcast_buf(&self, _buf: CommBuf<'_>, root: u32) -> Result<(), CommError> {
        check_root("broadcast", root, 1)
    }
    fn all_gather_buf(&self, send: CommSrc<'_>, recv: CommBuf<'_>) -> Result<(), CommError> {
        copy_same("all_gather", send, recv)
    }
    fn reduce_scatter_sum_buf(&self, send: CommSrc<'_>, recv: CommBuf<'_>) -> Result<(), CommError> {
        copy_same("reduce_scatter", send, recv)
    }
    fn barrier(&self) -> Result<(), CommError> {
        Ok(())
    }
}

fn copy_same(op: &'static str, send: CommSrc<'_>, recv: CommBuf<'_>) -> Result<(), CommError> {
    match (send, recv) {
        (CommSrc::F32(s), CommBuf::F32(r)) if s.len() == r.len() => r.copy_from_slice(s),
        (CommSrc::F64(s), CommBuf::F64(r)) if s.len() == r.len() => r.copy_from_slice(s),
        _ => return Err(CommError::Shape { op, message: "send and receive buffers differ in kind or length".into() }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_process_collectives_are_identities() {
        let c = SingleProcess;
        let mut t = Tensor::from_slice(&[1.0f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
        c.all_reduce_sum(&mut t).unwrap();
        c.all_reduce_avg(&mut t).unwrap();
        c.broadcast(&mut t, 0).unwrap();
        assert_eq!(Vec::<f32>::try_from(t.reshape([-1])).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        assert!(c.broadcast(&mut t, 1).is_err());
        let g = c.all_gather(&t).unwrap();
        assert_eq!(g.size(), vec![1, 2, 2]);
        let r = c.reduce_scatter_sum(&t.to_kind(Kind::Double)).unwrap();
        assert_eq!(r.kind(), Kind::Double);
        assert_eq!(Vec::<f64>::try_from(r).unwrap(), vec![1.0, 2.0, 3.0, 4.0]);
        c.barrier().unwrap();
    }

    #[test]
    fn bytes_travel_packed_in_f64s() {
        for text in ["", "a", "abcdef", "abcdefg", "/runs/quickstart-2 \u{e9}\u{1f600}"] {
            let b = text.as_bytes();
            assert_eq!(unpack_bytes(&pack_bytes(b, b.len().div_ceil(BYTES_PER_F64)), b.len()), b);
            assert_eq!(broadcast_bytes(&SingleProcess, b, 0).unwrap(), b);
            assert_eq!(all_gather_bytes(&SingleProcess, b).unwrap(), vec![b.to_vec()]);
        }
        let all: Vec<u8> = (0..=255u8).collect();
        assert_eq!(unpack_bytes(&pack_bytes(&all, 43), all.len()), all);
    }

    #[test]
    fn bf16_round_trips_through_f32() {
        let mut t = Tensor::from_slice(&[1.5f32, -2.0]).to_kind(Kind::BFloat16);
        SingleProcess.all_reduce_sum(&mut t).unwrap();
        assert_eq!(t.kind(), Kind::BFloat16);
        assert_eq!(Vec::<f32>::try_from(t.to_kind(Kind::Float)).unwrap(), vec![1.5, -2.0]);
        let mut big = Tensor::from_slice(&[(1i64 << 40) + 1]);
        SingleProcess.broadcast(&mut big, 0).unwrap();
        assert_eq!(big.kind(), Kind::Int64);
        assert_eq!(big.int64_value(&[0]), (1i64 << 40) + 1);
    }
}
