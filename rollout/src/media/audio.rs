//! Audio for `[start, end)`: packets decoded, resampled to 16 kHz mono and cut to the span
//! (feature `ffmpeg`).
//!
//! The resampler is FFmpeg's (`swr`, default settings), which is what the reference's
//! `ffmpeg ... -ac 1 -ar 16000 -c:a pcm_s16le` uses; its output format is signed 16-bit, and
//! the samples come back as `i16 / 32768`, which is exactly what the reference's loader reads
//! from that WAV file. Whole decoded frames go through the resampler (so the first output
//! samples have real history instead of a cold filter); the cut is made at 16 kHz from the
//! frames' timestamps: `round((end - start) * 16000)` samples starting at `start`, zeros where
//! the stream has no data (it starts late or ends early).
//!
//! Left out: streams whose timestamps jump (gaps are not filled, later samples shift), and
//! channel layouts beyond what swr downmixes by default.

use super::error::{MediaAction, MediaError};
use super::mel::SAMPLE_RATE;
use super::probe::AudioStream;
use ffmpeg_next as ff;
use std::path::Path;

fn layout_of(frame: &ff::frame::Audio) -> ff::ChannelLayout {
    let l = frame.channel_layout();
    if l.is_empty() { ff::ChannelLayout::default(i32::from(frame.channels())) } else { l }
}

/// Decodes `packets` of stream `a` and returns 16 kHz mono samples for `[s, e)` (seconds
/// from the file start `file_start`).
pub(crate) fn decode_span(
    a: &AudioStream,
    packets: &[ff::Packet],
    file_start: f64,
    s: f64,
    e: f64,
    path: &Path,
    action: MediaAction,
) -> Result<Vec<f32>, MediaError> {
    let fail = |detail: String| MediaError::Decode { action, path: path.to_path_buf(), stream: "audio", at: s, detail };
    let mut dec = ff::codec::Context::from_parameters(a.params.clone())
        .and_then(|c| {
            let mut d = c.decoder();
            d.set_packet_time_base(a.time_base);
            d.audio()
        })
        .map_err(|e| fail(format!("cannot open the {} decoder: {e}", a.codec)))?;
    let tb = f64::from(a.time_base.numerator()) / f64::from(a.time_base.denominator().max(1));
    let out_layout = ff::ChannelLayout::MONO;
    let out_fmt = ff::format::Sample::I16(ff::format::sample::Type::Packed);
    let mut swr: Option<(ff::format::Sample, u64, u32, ff::software::resampling::Context)> = None;
    let mut pcm: Vec<i16> = Vec::new();
    let mut t0: Option<f64> = None;
    let mut frame = ff::frame::Audio::empty();
    let mut rejected = 0usize;
    let push = |out: &ff::frame::Audio, pcm: &mut Vec<i16>| {
        let n = out.samples();
        let bytes = out.data(0);
        pcm.extend(bytes.chunks_exact(2).take(n).map(|b| i16::from_le_bytes([b[0], b[1]])));
    };
    for p in packets.iter().map(Some).chain([None]) {
        let sent = match p {
            Some(p) => dec.send_packet(p),
            None => dec.send_eof(),
        };
        match sent {
            Ok(()) | Err(ff::Error::Eof) => {}
            Err(ff::Error::InvalidData) => rejected += 1,
            Err(e) => return Err(fail(format!("decoder refused a packet: {e}"))),
        }
        while dec.receive_frame(&mut frame).is_ok() {
            if frame.samples() == 0 || frame.rate() == 0 {
                continue;
            }
            let layout = layout_of(&frame);
            frame.set_channel_layout(layout);
            if t0.is_none() {
                let Some(ts) = frame.timestamp().or(frame.pts()) else { continue };
                t0 = Some(ts as f64 * tb - file_start);
            }
            let key = (frame.format(), layout.bits(), frame.rate());
            if !matches!(&swr, Some((f, l, r, _)) if (*f, *l, *r) == key) {
                let ctx = ff::software::resampling::Context::get(
                    frame.format(),
                    layout,
                    frame.rate(),
                    out_fmt,
                    out_layout,
                    SAMPLE_RATE,
                )
                .map_err(|e| fail(format!("cannot resample {:?} {} Hz: {e}", frame.format(), frame.rate())))?;
                swr = Some((key.0, key.1, key.2, ctx));
            }
            let Some((_, _, _, ctx)) = swr.as_mut() else { continue };
            let cap = frame.samples() * SAMPLE_RATE as usize / frame.rate() as usize + 64;
            let mut out = ff::frame::Audio::new(out_fmt, cap, out_layout);
            ctx.run(&frame, &mut out).map_err(|e| fail(format!("resampling failed: {e}")))?;
            push(&out, &mut pcm);
        }
    }
    if let Some((_, _, _, ctx)) = swr.as_mut() {
        // Drain the resampler's delay (needs a pre-allocated frame).
        for _ in 0..64 {
            let mut out = ff::frame::Audio::new(out_fmt, 4096, out_layout);
            match ctx.flush(&mut out) {
                Ok(more) => {
                    push(&out, &mut pcm);
                    if more.is_none() || out.samples() == 0 {
                        break;
                    }
                }
                Err(e) => return Err(fail(format!("resampler flush failed: {e}"))),
            }
        }
    }
    let Some(t0) = t0 else {
        let why = if rejected > 0 { format!("{rejected} packet(s) rejected as invalid") } else { "no samples".into() };
        return Err(fail(format!("no audio decoded in [{s:.3}, {e:.3}]: {why}")));
    };
    let n = ((e - s) * f64::from(SAMPLE_RATE)).round().max(0.0) as usize;
    let first = ((s - t0) * f64::from(SAMPLE_RATE)).round() as i64;
    let covered = pcm.len() as i64 - first;
    if covered <= 0 {
        return Err(fail(format!("the audio stream ends at {:.3}s, before {s:.3}s", t0 + pcm.len() as f64 / 16_000.0)));
    }
    Ok((0..n as i64)
        .map(|j| usize::try_from(first + j).ok().and_then(|i| pcm.get(i)).map_or(0.0, |&v| f32::from(v) / 32768.0))
        .collect())
}
