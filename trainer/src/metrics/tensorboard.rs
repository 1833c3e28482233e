//! A small TensorBoard event-file writer (scalars only) and the reader that checks it.
//!
//! An event file is a TFRecord stream: each record is `u64 length (LE)`, `u32 masked CRC32C of
//! the length bytes`, the payload, `u32 masked CRC32C of the payload`, where
//! `masked(c) = ((c >> 15) | (c << 17)) + 0xA282EAD8`. Each payload is a serialized `tensorflow.Event`
//! protobuf; the first one carries `file_version = "brain.Event:2"`, the others a `Summary` of
//! `simple_value` scalars (`Event{1: wall_time double, 2: step int64, 3: file_version string,
//! 5: summary}`, `Summary{1: repeated Value}`, `Value{1: tag string, 2: simple_value float}`), which
//! TensorBoard's scalar dashboard reads. The protobuf is hand-encoded: three messages do not
//! justify a code generator. CRC32C is a table-driven Castagnoli CRC (checked against the standard
//! test vector).
//!
//! Files are named `events.out.tfevents.<unix seconds>.<host>.<pid>.<n>` (TensorBoard only requires
//! `tfevents` in the name). Every [`EventWriter::add_scalars`] is flushed, so a crash loses at
//! most the record being written. A resumed run starts a new file in the same directory whose
//! second record is `SessionLog{status: START}` (`Event` field 7) at the first step it will write
//! ([`EventWriter::resume`]): TensorBoard then discards the events of that step and later that
//! the interrupted run wrote after its checkpoint, so no step is shown twice. Left out: histograms, images, text, and the hparams plugin.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

const CRC32C_POLY: u32 = 0x82F6_3B78;

const fn crc_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ CRC32C_POLY } else { c >> 1 };
            k += 1;
        }
        table[i] = c;
        i += 1;
    }
    table
}

static CRC_TABLE: [u32; 256] = crc_table();

/// CRC32C (Castagnoli) of `data`.
pub fn crc32c(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// TFRecord's masked CRC.
pub fn masked_crc(data: &[u8]) -> u32 {
    let c = crc32c(data);
    c.rotate_right(15).wrapping_add(0xA282_EAD8)
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn len_field(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    varint(out, u64::from(field << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// What an event carries besides its time and step.
enum Body<'a> {
    FileVersion(&'a str),
    Scalars(&'a [(String, f32)]),
    /// `SessionLog{status: START}` (a resumed run's purge marker).
    SessionStart,
}

/// A serialized `Event` with `wall_time`, `step` and `body`.
fn encode_event(wall_time: f64, step: i64, body: Body<'_>) -> Vec<u8> {
    let mut ev = Vec::with_capacity(32);
    ev.push(1 << 3 | 1);
    ev.extend_from_slice(&wall_time.to_le_bytes());
    ev.push(2 << 3);
    varint(&mut ev, step as u64);
    match body {
        Body::FileVersion(v) => len_field(&mut ev, 3, v.as_bytes()),
        Body::Scalars([]) => {}
        Body::Scalars(scalars) => {
            let mut summary = Vec::new();
            for (tag, value) in scalars {
                let mut val = Vec::with_capacity(tag.len() + 8);
                len_field(&mut val, 1, tag.as_bytes());
                val.push(2 << 3 | 5);
                val.extend_from_slice(&value.to_le_bytes());
                len_field(&mut summary, 1, &val);
            }
            len_field(&mut ev, 5, &summary);
        }
        // session_log (7) = SessionLog{status (1) = START (1)}.
        Body::SessionStart => len_field(&mut ev, 7, &[1 << 3, 1]),
    }
    ev
}

fn frame(payload: &[u8]) -> Vec<u8> {
    let len = (payload.len() as u64).to_le_bytes();
    let mut out = Vec::with_capacity(payload.len() + 16);
    out.extend_from_slice(&len);
    out.extend_from_slice(&masked_crc(&len).to_le_bytes());
    out.extend_from_slice(payload);
    out.extend_from_slice(&masked_crc(payload).to_le_bytes());
    out
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

fn host() -> String {
    let raw = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .unwrap_or_else(|| "localhost".to_owned());
    let clean: String = raw.trim().chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_').collect();
    if clean.is_empty() { "localhost".to_owned() } else { clean }
}

/// Distinguishes writers opened by one process in the same second.
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Appends scalar events to a new event file in a directory.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir` if needed and a fresh event file in it, starting with the version record.
    pub fn create(dir: &Path) -> io::Result<EventWriter> {
        std::fs::create_dir_all(dir)?;
        let secs = now();
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!("events.out.tfevents.{}.{}.{}.{n}", secs as u64, host(), std::process::id());
        let path = dir.join(name);
        let mut out = BufWriter::new(File::create(&path)?);
        out.write_all(&frame(&encode_event(secs, 0, Body::FileVersion("brain.Event:2"))))?;
        out.flush()?;
        Ok(EventWriter { path, out })
    }

    /// A new event file for a run continuing at `first_step`: the version record, then a
    /// session start at `first_step` (see the module doc).
    pub fn resume(dir: &Path, first_step: u64) -> io::Result<EventWriter> {
        let mut w = Self::create(dir)?;
        let step = i64::try_from(first_step).unwrap_or(i64::MAX);
        w.out.write_all(&frame(&encode_event(now(), step, Body::SessionStart)))?;
        w.out.flush()?;
        Ok(w)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// One event at `step` holding every `(tag, value)`; flushed.
    pub fn add_scalars(&mut self, step: u64, scalars: &[(String, f64)]) -> io::Result<()> {
        let values: Vec<(String, f32)> = scalars.iter().map(|(t, v)| (t.clone(), *v as f32)).collect();
        let step = i64::try_from(step).unwrap_or(i64::MAX);
        self.out.write_all(&frame(&encode_event(now(), step, Body::Scalars(&values))))?;
        self.out.flush()
    }
}

/// A decoded event (the fields this writer uses).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Event {
    pub wall_time: f64,
    pub step: i64,
    pub file_version: Option<String>,
    pub scalars: Vec<(String, f32)>,
    /// A `SessionLog` with status START (a resumed run's purge marker).
    pub session_start: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum EventReadError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("record at byte {offset}: {message}")]
    Corrupt { offset: usize, message: String },
}

/// The payloads of a TFRecord file, checking both CRCs of every record. A truncated last record
/// (a writer killed mid-write) is an error too.
pub fn read_records(path: &Path) -> Result<Vec<Vec<u8>>, EventReadError> {
    let data = std::fs::read(path)?;
    let mut out = Vec::new();
    let mut at = 0usize;
    let corrupt = |offset: usize, message: &str| EventReadError::Corrupt { offset, message: message.to_owned() };
    while at < data.len() {
        let head = data.get(at..at + 12).ok_or_else(|| corrupt(at, "truncated header"))?;
        let (len_bytes, crc_bytes) = head.split_at(8);
        let len = u64::from_le_bytes(len_bytes.try_into().map_err(|_| corrupt(at, "bad length"))?) as usize;
        let crc = u32::from_le_bytes(crc_bytes.try_into().map_err(|_| corrupt(at, "bad crc"))?);
        if crc != masked_crc(len_bytes) {
            return Err(corrupt(at, "length CRC mismatch"));
        }
        let body_end = (at + 12).checked_add(len).ok_or_else(|| corrupt(at, "bad length"))?;
        let body = data.get(at + 12..body_end).ok_or_else(|| corrupt(at, "truncated payload"))?;
        let tail = data.get(body_end..body_end + 4).ok_or_else(|| corrupt(at, "truncated payload CRC"))?;
        let crc = u32::from_le_bytes(tail.try_into().map_err(|_| corrupt(at, "bad crc"))?);
        if crc != masked_crc(body) {
            return Err(corrupt(at, "payload CRC mismatch"));
        }
        out.push(body.to_vec());
        at = body_end + 4;
    }
    Ok(out)
}

/// A protobuf reader over one message's bytes: `(field, wire type, payload)` triples.
struct Fields<'a> {
    data: &'a [u8],
    at: usize,
}

enum Wire<'a> {
    Varint(u64),
    Fixed64([u8; 8]),
    Fixed32([u8; 4]),
    Bytes(&'a [u8]),
}

impl<'a> Fields<'a> {
    fn varint(&mut self) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = *self.data.get(self.at)?;
            self.at += 1;
            v |= u64::from(b & 0x7F) << shift;
            if b < 0x80 {
                return Some(v);
            }
        }
        None
    }

    fn next_field(&mut self) -> Option<Option<(u32, Wire<'a>)>> {
        if self.at >= self.data.len() {
            return Some(None);
        }
        let key = self.varint()?;
        let field = (key >> 3) as u32;
        let wire = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.data.get(self.at..self.at + 8)?;
                self.at += 8;
                Wire::Fixed64(b.try_into().ok()?)
            }
            2 => {
                let n = self.varint()? as usize;
                let b = self.data.get(self.at..self.at.checked_add(n)?)?;
                self.at += n;
                Wire::Bytes(b)
            }
            5 => {
                let b = self.data.get(self.at..self.at + 4)?;
                self.at += 4;
                Wire::Fixed32(b.try_into().ok()?)
            }
            _ => return None,
        };
        Some(Some((field, wire)))
    }
}

/// Decodes an `Event` payload (unknown fields skipped); `None` if it is not valid protobuf.
pub fn parse_event(payload: &[u8]) -> Option<Event> {
    let mut ev = Event::default();
    let mut f = Fields { data: payload, at: 0 };
    while let Some((field, wire)) = f.next_field()? {
        match (field, wire) {
            (1, Wire::Fixed64(b)) => ev.wall_time = f64::from_le_bytes(b),
            (2, Wire::Varint(v)) => ev.step = v as i64,
            (3, Wire::Bytes(b)) => ev.file_version = Some(String::from_utf8_lossy(b).into_owned()),
            (7, Wire::Bytes(b)) => ev.session_start = b == [1 << 3, 1],
            (5, Wire::Bytes(summary)) => {
                let mut s = Fields { data: summary, at: 0 };
                while let Some((sf, sw)) = s.next_field()? {
                    if let (1, Wire::Bytes(value)) = (sf, sw) {
                        let mut v = Fields { data: value, at: 0 };
                        let (mut tag, mut x) = (String::new(), None);
                        while let Some((vf, vw)) = v.next_field()? {
                            match (vf, vw) {
                                (1, Wire::Bytes(t)) => tag = String::from_utf8_lossy(t).into_owned(),
                                (2, Wire::Fixed32(b)) => x = Some(f32::from_le_bytes(b)),
                                _ => {}
                            }
                        }
                        if let Some(x) = x {
                            ev.scalars.push((tag, x));
                        }
                    }
                }
            }
            _ => {}
        }
    }
    Some(ev)
}

/// Every event of a file, in order.
pub fn read_events(path: &Path) -> Result<Vec<Event>, EventReadError> {
    read_records(path)?
        .iter()
        .enumerate()
        .map(|(i, r)| {
            parse_event(r).ok_or_else(|| EventReadError::Corrupt { offset: i, message: "not an Event protobuf".into() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_test_vectors() {
        // RFC 3720 / iSCSI check value and two zero-filled vectors.
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        assert_eq!(crc32c(&[0xFFu8; 32]), 0x62A8_AB43);
        assert_eq!(crc32c(b""), 0);
    }

    #[test]
    fn event_round_trip_and_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::create(dir.path()).unwrap();
        assert!(w.path().file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
        w.add_scalars(3, &[("actor/loss".into(), 0.25), ("lr".into(), 1e-6)]).unwrap();
        let events = read_events(w.path()).unwrap();
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].file_version.as_deref(), Some("brain.Event:2"));
        assert_eq!(events[1].step, 3);
        assert_eq!(events[1].scalars, vec![("actor/loss".to_owned(), 0.25f32), ("lr".to_owned(), 1e-6f32)]);
        // Flip one payload byte: the CRC catches it.
        let mut bytes = std::fs::read(w.path()).unwrap();
        let n = bytes.len();
        bytes[n - 6] ^= 1;
        let bad = dir.path().join("bad.tfevents");
        std::fs::write(&bad, &bytes).unwrap();
        assert!(matches!(read_records(&bad), Err(EventReadError::Corrupt { .. })));
        std::fs::write(&bad, &bytes[..n - 2]).unwrap();
        assert!(read_records(&bad).is_err());
    }

    #[test]
    fn a_resumed_file_starts_a_session_at_its_first_step() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = EventWriter::resume(dir.path(), 4).unwrap();
        w.add_scalars(4, &[("loss".into(), 1.0)]).unwrap();
        let events = read_events(w.path()).unwrap();
        assert_eq!(events.len(), 3);
        assert!(!events[0].session_start && events[1].session_start && !events[2].session_start);
        assert_eq!((events[1].step, events[2].step), (4, 4));
    }
}
