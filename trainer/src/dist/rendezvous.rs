//! TCP rendezvous at MASTER_ADDR:MASTER_PORT: rank 0 hands a small blob (the NCCL unique id)
//! to every other rank when there is no MPI to broadcast it.
//!
//! Rank 0 listens on `0.0.0.0:MASTER_PORT` and answers `world - 1` connections, each of which
//! first says its rank; a peer connects to MASTER_ADDR:MASTER_PORT, retrying until the timeout
//! (rank 0 may start later). Everything is bounded by the timeout, and a missing rank is named.
//!
//! Left out: authentication (cluster-internal network assumed) and re-rendezvous after a failure.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum RendezvousError {
    #[error("rendezvous at {addr}: {message}")]
    Io { addr: String, message: String },
    #[error("rendezvous at {addr}: rank(s) {missing} did not connect within {timeout:?}")]
    Missing { addr: String, missing: String, timeout: Duration },
    #[error("rendezvous: the blob is {0} bytes, more than 65535")]
    TooLarge(usize),
}

/// Rank 0: serve `blob` to ranks 1..world listening on `bind` ("0.0.0.0:PORT").
pub fn serve(bind: &str, world: u32, blob: &[u8], timeout: Duration) -> Result<(), RendezvousError> {
    let len = u16::try_from(blob.len()).map_err(|_| RendezvousError::TooLarge(blob.len()))?;
    let io = |e: std::io::Error| RendezvousError::Io { addr: bind.into(), message: e.to_string() };
    let listener = TcpListener::bind(bind).map_err(io)?;
    listener.set_nonblocking(true).map_err(io)?;
    let deadline = Instant::now() + timeout;
    let mut seen = vec![false; world as usize];
    seen[0] = true;
    while seen.iter().any(|s| !s) {
        match listener.accept() {
            Ok((mut s, _)) => {
                s.set_nonblocking(false).map_err(io)?;
                s.set_read_timeout(Some(timeout)).map_err(io)?;
                let mut rank = [0u8; 4];
                s.read_exact(&mut rank).map_err(io)?;
                let rank = u32::from_le_bytes(rank) as usize;
                if let Some(slot) = seen.get_mut(rank) {
                    *slot = true;
                }
                s.write_all(&len.to_le_bytes()).and_then(|()| s.write_all(blob)).map_err(io)?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() > deadline {
                    let missing: Vec<String> =
                        seen.iter().enumerate().filter(|(_, s)| !**s).map(|(r, _)| r.to_string()).collect();
                    return Err(RendezvousError::Missing { addr: bind.into(), missing: missing.join(", "), timeout });
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) => return Err(io(e)),
        }
    }
    Ok(())
}

/// Rank > 0: fetch the blob from rank 0 at `addr` ("MASTER_ADDR:MASTER_PORT").
pub fn fetch(addr: &str, rank: u32, timeout: Duration) -> Result<Vec<u8>, RendezvousError> {
    let io = |e: std::io::Error| RendezvousError::Io { addr: addr.into(), message: e.to_string() };
    let deadline = Instant::now() + timeout;
    let mut s = loop {
        match TcpStream::connect(addr) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                return Err(RendezvousError::Io { addr: addr.into(), message: format!("rank 0 not reachable: {e}") });
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    s.set_read_timeout(Some(timeout)).map_err(io)?;
    s.write_all(&rank.to_le_bytes()).map_err(io)?;
    let mut len = [0u8; 2];
    s.read_exact(&mut len).map_err(io)?;
    let mut blob = vec![0u8; usize::from(u16::from_le_bytes(len))];
    s.read_exact(&mut blob).map_err(io)?;
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_ranks_get_the_blob() {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let t = Duration::from_secs(10);
        let peers: Vec<_> =
            (1..3u32).map(|r| std::thread::spawn(move || fetch(&format!("127.0.0.1:{port}"), r, t).unwrap())).collect();
        serve(&format!("127.0.0.1:{port}"), 3, b"unique-id", t).unwrap();
        for p in peers {
            assert_eq!(p.join().unwrap(), b"unique-id");
        }
    }

    #[test]
    fn a_missing_rank_is_named() {
        let e = serve("127.0.0.1:0", 3, b"x", Duration::from_millis(100)).unwrap_err();
        assert!(e.to_string().contains("rank(s) 1, 2 did not connect"), "{e}");
        assert!(fetch("127.0.0.1:9", 1, Duration::from_millis(100)).is_err());
    }
}
