//! Collective watchdog: a rank that dies or stalls ends the job with an error naming the rank
//! within the configured timeout, never a silent hang.
//!
//! Blocking collectives (MPI, NCCL) wait forever for a peer that died or stopped calling them.
//! Every rank therefore counts the collectives it entered and finished ([`Progress`]) and sends
//! them on a TCP side channel to a hub on rank 0 several times per timeout. The hub aborts the
//! job when a peer's connection closes without a goodbye (the process died), when a peer stops
//! sending heartbeats for `timeout`, or when some rank has been inside one collective for longer
//! than `timeout` — naming the ranks that have not reached that collective. An abort prints
//! `omnirl dist: ...` on stderr (on every rank still reachable) and exits the process with
//! [`ABORT_EXIT_CODE`]; the launcher then tears down the rest. Peers abort too if the hub itself
//! disappears. The hub's address is handed to the other ranks by the caller (over MPI, or
//! MASTER_ADDR in a TCP rendezvous).
//!
//! Left out: recovering from a failure (the job ends; training resumes from the last complete
//! checkpoint, which rank 0 writes atomically) and authentication of the side channel.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Exit status of a process the watchdog ends.
pub const ABORT_EXIT_CODE: i32 = 75;

#[derive(Debug, thiserror::Error)]
pub enum WatchdogError {
    #[error("watchdog side channel {addr}: {message}")]
    Io { addr: String, message: String },
}

/// Collectives this rank entered and finished, shared with the heartbeat thread.
#[derive(Debug, Default)]
pub struct Progress {
    entered: AtomicU64,
    done: AtomicU64,
    /// Milliseconds since `epoch` when the current collective was entered.
    since_ms: AtomicU64,
    op: Mutex<&'static str>,
}

/// One rank's view of where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    pub entered: u64,
    pub done: u64,
    /// How long the current collective has been running (0 when none).
    pub busy_ms: u64,
}

/// Tracks collectives and, on a hub or peer, watches the others. Dropping it ends the watch
/// cleanly (goodbye on the side channel).
#[derive(Debug)]
pub struct Watchdog {
    rank: u32,
    progress: Arc<Progress>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<TcpStream>>>,
}

fn ms_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_millis() as u64
}

/// Print the error and end the process. The line goes out in one write: `eprintln!` writes each
/// piece of its format separately, and under mpirun every rank's stderr shares one pipe, so two
/// ranks aborting together used to splice their lines.
fn abort(rank: u32, message: &str) -> ! {
    let line = format!("omnirl dist: rank {rank}: aborting the job: {message}\n");
    // Nothing is left to report a failed write to.
    let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), line.as_bytes());
    std::process::exit(ABORT_EXIT_CODE)
}

fn heartbeat_interval(timeout: Duration) -> Duration {
    (timeout / 10).clamp(Duration::from_millis(20), Duration::from_secs(1))
}

impl Watchdog {
    /// A watchdog that only counts (world size 1, or no side channel wanted).
    pub fn local(rank: u32) -> Watchdog {
        Watchdog {
            rank,
            progress: Arc::new(Progress::default()),
            epoch: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            peers: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// Mark the start of collective `op`; pair with [`Watchdog::leave`].
    pub fn enter(&self, op: &'static str) {
        if let Ok(mut g) = self.progress.op.lock() {
            *g = op;
        }
        self.progress.since_ms.store(ms_since(self.epoch), Ordering::SeqCst);
        self.progress.entered.fetch_add(1, Ordering::SeqCst);
    }

    /// The rank this watchdog belongs to.
    pub fn rank(&self) -> u32 {
        self.rank
    }

    pub fn leave(&self) {
        self.progress.done.fetch_add(1, Ordering::SeqCst);
    }

    pub fn snapshot(&self) -> Snapshot {
        snapshot(&self.progress, self.epoch)
    }

    /// Bind the hub on rank 0 (`bind` like "0.0.0.0:0"); returns the bound port. Call
    /// [`Watchdog::start_hub`] once the port has been handed to the peers.
    pub fn bind_hub(bind: &str) -> Result<TcpListener, WatchdogError> {
        TcpListener::bind(bind).map_err(|e| WatchdogError::Io { addr: bind.into(), message: e.to_string() })
    }

    /// Rank 0: accept `world - 1` peers (within `timeout`), then watch them.
    pub fn start_hub(listener: TcpListener, world: u32, timeout: Duration) -> Result<Watchdog, WatchdogError> {
        let dog = Watchdog::local(0);
        let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
        let io = |e: std::io::Error| WatchdogError::Io { addr: addr.clone(), message: e.to_string() };
        listener.set_nonblocking(true).map_err(io)?;
        let deadline = Instant::now() + timeout;
        let n = world.saturating_sub(1) as usize;
        // Per peer: last heard, snapshot, said goodbye.
        let state: PeerState = Arc::new(Mutex::new(vec![None; n + 1]));
        let mut accepted = 0;
        while accepted < n {
            match listener.accept() {
                Ok((stream, _)) => {
                    stream.set_nonblocking(false).map_err(io)?;
                    let mut reader = BufReader::new(stream.try_clone().map_err(io)?);
                    let mut hello = String::new();
                    stream.set_read_timeout(Some(timeout)).map_err(io)?;
                    reader.read_line(&mut hello).map_err(io)?;
                    stream.set_read_timeout(None).map_err(io)?;
                    let peer = match hello.trim().strip_prefix("hello ").and_then(|r| r.parse::<usize>().ok()) {
                        Some(r) if (1..=n).contains(&r) => r,
                        _ => return Err(io(std::io::Error::other(format!("bad greeting {hello:?}")))),
                    };
                    if let Ok(mut s) = state.lock() {
                        s[peer] = Some((Instant::now(), Snapshot { entered: 0, done: 0, busy_ms: 0 }, false));
                    }
                    let (state, stop) = (Arc::clone(&state), Arc::clone(&dog.stop));
                    std::thread::spawn(move || hub_reader(peer as u32, reader, state, stop));
                    if let Ok(mut p) = dog.peers.lock() {
                        p.push(stream);
                    }
                    accepted += 1;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline {
                        let missing: Vec<String> = state
                            .lock()
                            .map(|s| (1..=n).filter(|&r| s[r].is_none()).map(|r| r.to_string()).collect())
                            .unwrap_or_default();
                        return Err(io(std::io::Error::other(format!(
                            "rank(s) {} did not connect within {timeout:?}",
                            missing.join(", ")
                        ))));
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => return Err(io(e)),
            }
        }
        let (progress, epoch, stop, peers) =
            (Arc::clone(&dog.progress), dog.epoch, Arc::clone(&dog.stop), Arc::clone(&dog.peers));
        std::thread::spawn(move || hub_monitor(progress, epoch, state, stop, peers, timeout));
        Ok(dog)
    }

    /// Rank > 0: connect to the hub at `addr` (retrying until `timeout`), then send heartbeats.
    pub fn start_peer(rank: u32, addr: &str, timeout: Duration) -> Result<Watchdog, WatchdogError> {
        let dog = Watchdog::local(rank);
        let io = |e: std::io::Error| WatchdogError::Io { addr: addr.into(), message: e.to_string() };
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match TcpStream::connect(addr) {
                Ok(s) => break s,
                Err(e) if Instant::now() > deadline => return Err(io(e)),
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        let _ = stream.set_nodelay(true);
        let mut writer = stream.try_clone().map_err(io)?;
        writeln!(writer, "hello {rank}").map_err(io)?;
        let reader = BufReader::new(stream.try_clone().map_err(io)?);
        if let Ok(mut p) = dog.peers.lock() {
            p.push(stream);
        }
        let (stop, hub_left) = (Arc::clone(&dog.stop), Arc::new(AtomicBool::new(false)));
        let left = Arc::clone(&hub_left);
        std::thread::spawn(move || peer_reader(rank, reader, stop, left));
        let (progress, epoch, stop) = (Arc::clone(&dog.progress), dog.epoch, Arc::clone(&dog.stop));
        std::thread::spawn(move || {
            let interval = heartbeat_interval(timeout);
            while !stop.load(Ordering::SeqCst) {
                let s = snapshot(&progress, epoch);
                if hub_left.load(Ordering::SeqCst) {
                    // Rank 0 finished cleanly; a collective that still waits will never complete.
                    if s.busy_ms > timeout.as_millis() as u64 {
                        abort(rank, &format!("rank 0 left the job while this rank waits in collective #{}", s.entered));
                    }
                } else if writeln!(writer, "beat {} {} {}", s.entered, s.done, s.busy_ms).is_err() {
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    abort(rank, "lost the watchdog connection to rank 0 (rank 0 died or its node is unreachable)");
                }
                // A stalled hub cannot judge; a peer stuck twice as long as the timeout ends itself.
                if s.busy_ms > 2 * timeout.as_millis() as u64 {
                    abort(rank, &format!("collective #{} has not completed for {} ms", s.entered, s.busy_ms));
                }
                std::thread::sleep(interval);
            }
        });
        Ok(dog)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Ok(mut peers) = self.peers.lock() {
            for p in peers.iter_mut() {
                let _ = writeln!(p, "bye");
                let _ = p.flush();
            }
        }
    }
}

fn snapshot(p: &Progress, epoch: Instant) -> Snapshot {
    let (entered, done) = (p.entered.load(Ordering::SeqCst), p.done.load(Ordering::SeqCst));
    let busy_ms = if entered > done { ms_since(epoch).saturating_sub(p.since_ms.load(Ordering::SeqCst)) } else { 0 };
    Snapshot { entered, done, busy_ms }
}

type PeerState = Arc<Mutex<Vec<Option<(Instant, Snapshot, bool)>>>>;

fn hub_reader(peer: u32, mut reader: BufReader<TcpStream>, state: PeerState, stop: Arc<AtomicBool>) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap_or(0);
        let words: Vec<&str> = line.split_whitespace().collect();
        let Ok(mut s) = state.lock() else { return };
        let Some(entry) = s.get_mut(peer as usize).and_then(Option::as_mut) else { return };
        match words.as_slice() {
            ["bye"] => {
                entry.2 = true;
                return;
            }
            ["beat", e, d, b] => {
                let parse = |x: &str| x.parse::<u64>().unwrap_or(0);
                *entry = (Instant::now(), Snapshot { entered: parse(e), done: parse(d), busy_ms: parse(b) }, false);
            }
            _ if n == 0 => {
                drop(s);
                if !stop.load(Ordering::SeqCst) {
                    abort(0, &format!("rank {peer} died: its watchdog connection closed without a goodbye"));
                }
                return;
            }
            _ => {}
        }
    }
}

fn peer_reader(rank: u32, mut reader: BufReader<TcpStream>, stop: Arc<AtomicBool>, hub_left: Arc<AtomicBool>) {
    let mut line = String::new();
    loop {
        line.clear();
        let n = reader.read_line(&mut line).unwrap_or(0);
        if let Some(msg) = line.trim().strip_prefix("abort ") {
            abort(rank, msg);
        }
        if line.trim() == "bye" {
            hub_left.store(true, Ordering::SeqCst);
            return;
        }
        if n == 0 {
            if !stop.load(Ordering::SeqCst) {
                abort(rank, "rank 0 died: its watchdog connection closed without a goodbye");
            }
            return;
        }
    }
}

/// Which ranks hold up a stalled collective, given every rank's snapshot (index = rank).
/// Returns a message when some rank has been inside one collective for longer than `timeout`.
pub fn diagnose(snaps: &[Snapshot], silent: &[u32], timeout: Duration) -> Option<String> {
    if let Some(&r) = silent.first() {
        return Some(format!("rank {r} sent no heartbeat for {timeout:?} (stalled or unreachable)"));
    }
    let limit = timeout.as_millis() as u64;
    let (stuck, s) = snaps.iter().enumerate().find(|(_, s)| s.busy_ms > limit)?;
    let behind: Vec<String> =
        snaps.iter().enumerate().filter(|(_, o)| o.entered < s.entered).map(|(r, _)| r.to_string()).collect();
    Some(if behind.is_empty() {
        format!(
            "collective #{} has been stalled for {} ms on rank {stuck} although every rank entered it",
            s.entered, s.busy_ms
        )
    } else {
        format!(
            "rank(s) {} did not reach collective #{} within {timeout:?} (rank {stuck} has waited {} ms)",
            behind.join(", "),
            s.entered,
            s.busy_ms
        )
    })
}

fn hub_monitor(
    progress: Arc<Progress>,
    epoch: Instant,
    state: PeerState,
    stop: Arc<AtomicBool>,
    peers: Arc<Mutex<Vec<TcpStream>>>,
    timeout: Duration,
) {
    let interval = heartbeat_interval(timeout);
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(interval);
        let message = {
            let Ok(s) = state.lock() else { return };
            let mut snaps = vec![snapshot(&progress, epoch)];
            let mut silent = Vec::new();
            for (r, entry) in s.iter().enumerate().skip(1) {
                match entry {
                    Some((heard, snap, bye)) => {
                        if !bye && heard.elapsed() > timeout {
                            silent.push(r as u32);
                        }
                        snaps.push(*snap);
                    }
                    None => snaps.push(Snapshot { entered: 0, done: 0, busy_ms: 0 }),
                }
            }
            diagnose(&snaps, &silent, timeout)
        };
        if let Some(m) = message {
            if stop.load(Ordering::SeqCst) {
                return;
            }
            if let Ok(mut p) = peers.lock() {
                for stream in p.iter_mut() {
                    let _ = writeln!(stream, "abort {m} (reported by rank 0)");
                }
            }
            abort(0, &m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(entered: u64, done: u64, busy_ms: u64) -> Snapshot {
        Snapshot { entered, done, busy_ms }
    }

    #[test]
    fn diagnose_names_the_laggards() {
        let t = Duration::from_millis(500);
        assert_eq!(diagnose(&[s(3, 3, 0), s(3, 2, 100)], &[], t), None);
        let m = diagnose(&[s(4, 3, 900), s(3, 3, 0), s(4, 3, 800)], &[], t).unwrap();
        assert!(m.starts_with("rank(s) 1 did not reach collective #4"), "{m}");
        let m = diagnose(&[s(4, 3, 900), s(4, 3, 900)], &[], t).unwrap();
        assert!(m.contains("every rank entered it"), "{m}");
        let m = diagnose(&[s(0, 0, 0), s(0, 0, 0)], &[1], t).unwrap();
        assert!(m.starts_with("rank 1 sent no heartbeat"), "{m}");
    }

    #[test]
    fn counts_collectives() {
        let d = Watchdog::local(0);
        d.enter("all_reduce");
        assert_eq!(d.snapshot().entered, 1);
        assert_eq!(d.snapshot().done, 0);
        d.leave();
        assert_eq!(d.snapshot(), s(1, 1, 0));
    }

    #[test]
    fn hub_and_peer_connect_and_say_goodbye() {
        let listener = Watchdog::bind_hub("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let t = Duration::from_secs(5);
        let peer = std::thread::spawn(move || Watchdog::start_peer(1, &addr, t).unwrap());
        let hub = Watchdog::start_hub(listener, 2, t).unwrap();
        let peer = peer.join().unwrap();
        assert_eq!((hub.rank(), peer.rank()), (0, 1));
        hub.enter("barrier");
        peer.enter("barrier");
        peer.leave();
        hub.leave();
        assert_eq!((hub.snapshot().entered, hub.snapshot().done), (1, 1));
        assert_eq!((peer.snapshot().entered, peer.snapshot().done), (1, 1));
        // A peer that says goodbye is not a dead peer: were it taken for one, the hub would end
        // this test process with ABORT_EXIT_CODE while it sleeps here.
        drop(peer);
        std::thread::sleep(Duration::from_millis(300));
        drop(hub);
    }
}
