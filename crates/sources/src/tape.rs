//! Tapes: every raw message, exactly as received, with its receive time.
//!
//! One zstd-compressed file per exchange per UTC day:
//! `<dir>/<exchange>/<YYYY-MM-DD>.tape.zst`. A restart on the same day starts
//! a new segment, `<YYYY-MM-DD>_r001.tape.zst` and so on (they sort after the
//! first), and never appends: after a crash the old file may end inside an
//! unfinished zstd frame, which a frame appended behind it would make
//! unreadable. Inside, text lines:
//!
//! ```text
//! # candlekeep-tape v1 exchange=binance
//! 1723161254087896568 r {"stream":"btcusdt@trade","data":{...}}
//! 1723161254087896568 j "a frame\nwith a newline, JSON-escaped"
//! 1723161254087896568 h {"url":"https://…/exchangeInfo","data":"…"}
//! ```
//!
//! `r` is a WebSocket frame written raw; `j` is one that holds a line break,
//! written as a JSON string; `h` is a REST response.
//!
//! The header line is a zstd frame of its own; then the writer ends a zstd
//! frame, with zstd's content checksum, at least every `flush_every`
//! messages (and when asked), so a crash loses at most the unflushed tail,
//! and damage to the file costs only the frames it touches: the reader
//! ([`crate::zstd_frames`]) skips a frame that fails its checksum whole and
//! reports it. Tapes written before checksums (one frame a day) still read.
//! When a day closes its file is finished and fsync'd.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use ck_bus::{Origin, RawMessage};
use ck_model::{Exchange, Ts};

/// The first line of every tape frame.
pub const TAPE_HEADER: &str = "# candlekeep-tape v1";

/// Why writing a tape failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TapeError {
    /// The file could not be created, written or synced.
    #[error("tape file {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

struct OpenDay {
    day: Ts,
    path: PathBuf,
    /// The open frame, if any; else the file between frames.
    frame: Frame,
    unflushed: usize,
}

/// A day file, inside a zstd frame or between two.
enum Frame {
    Open(zstd::stream::write::Encoder<'static, BufWriter<File>>),
    Closed(BufWriter<File>),
    /// Only while moving from one state to the other.
    Moving,
}

impl OpenDay {
    /// The open frame, starting one (with its checksum) if needed.
    fn encoder(
        &mut self,
    ) -> io::Result<&mut zstd::stream::write::Encoder<'static, BufWriter<File>>> {
        if let Frame::Closed(_) = self.frame
            && let Frame::Closed(file) = std::mem::replace(&mut self.frame, Frame::Moving)
        {
            // Level 1: live capture must keep up first; tapes still shrink ~8x.
            let mut encoder = zstd::stream::write::Encoder::new(file, 1)?;
            encoder.include_checksum(true)?;
            self.frame = Frame::Open(encoder);
        }
        match &mut self.frame {
            Frame::Open(encoder) => Ok(encoder),
            _ => Err(io::Error::other("tape file lost between frames")),
        }
    }

    /// Ends the open frame (writing its checksum) and pushes it to the file.
    fn end_frame(&mut self) -> io::Result<()> {
        match std::mem::replace(&mut self.frame, Frame::Moving) {
            Frame::Open(encoder) => {
                let mut file = encoder.finish()?;
                file.flush()?;
                self.frame = Frame::Closed(file);
            }
            other => self.frame = other,
        }
        Ok(())
    }

    /// Ends the open frame and gives the file back.
    fn finish(mut self) -> io::Result<File> {
        self.end_frame()?;
        match self.frame {
            Frame::Closed(file) => file.into_inner().map_err(|e| e.into_error()),
            _ => Err(io::Error::other("tape file lost between frames")),
        }
    }
}

/// Writes one exchange's tape, rotating at UTC midnight (of receive time).
pub struct TapeWriter {
    dir: PathBuf,
    exchange: Exchange,
    flush_every: usize,
    current: Option<OpenDay>,
    line: String,
}

impl TapeWriter {
    /// A writer for `exchange` under `dir` (the tapes root).
    #[must_use]
    pub fn new(dir: &Path, exchange: Exchange, flush_every: usize) -> TapeWriter {
        TapeWriter {
            dir: dir.to_owned(),
            exchange,
            flush_every: flush_every.max(1),
            current: None,
            line: String::new(),
        }
    }

    /// The file for one day.
    #[must_use]
    pub fn path_for(dir: &Path, exchange: Exchange, day: Ts) -> PathBuf {
        dir.join(exchange.as_str())
            .join(format!("{}.tape.zst", day.date_string()))
    }

    /// Appends one message.
    pub fn write(&mut self, msg: &RawMessage) -> Result<(), TapeError> {
        let day = msg.ts_received.day_start();
        if self.current.as_ref().is_some_and(|c| c.day != day) {
            self.close_day()?;
        }
        if self.current.is_none() {
            self.current = Some(self.open_day(day)?);
        }
        encode_line(&mut self.line, msg);
        let flush_every = self.flush_every;
        let Some(cur) = self.current.as_mut() else {
            return Ok(());
        };
        if let Err(source) = cur
            .encoder()
            .and_then(|e| e.write_all(self.line.as_bytes()))
        {
            return Err(TapeError::Io {
                path: cur.path.clone(),
                source,
            });
        }
        cur.unflushed += 1;
        if cur.unflushed >= flush_every {
            self.flush()?;
        }
        Ok(())
    }

    /// Pushes everything written so far to the file as a complete zstd
    /// frame with its checksum.
    pub fn flush(&mut self) -> Result<(), TapeError> {
        if let Some(cur) = self.current.as_mut() {
            cur.end_frame().map_err(|source| TapeError::Io {
                path: cur.path.clone(),
                source,
            })?;
            cur.unflushed = 0;
        }
        Ok(())
    }

    /// Finishes the current day's frame and fsyncs the file.
    pub fn close_day(&mut self) -> Result<(), TapeError> {
        let Some(cur) = self.current.take() else {
            return Ok(());
        };
        let path = cur.path.clone();
        let io = |source| TapeError::Io {
            path: path.clone(),
            source,
        };
        let file = cur.finish().map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(())
    }

    fn open_day(&self, day: Ts) -> Result<OpenDay, TapeError> {
        let first = Self::path_for(&self.dir, self.exchange, day);
        let mut path = first.clone();
        let mut segment = 0;
        while path.exists() {
            segment += 1;
            path = first.with_file_name(format!("{}_r{segment:03}.tape.zst", day.date_string()));
        }
        let io = |source| TapeError::Io {
            path: path.clone(),
            source,
        };
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io)?;
        }
        let file = OpenOptions::new()
            .create_new(true)
            .write(true)
            .open(&path)
            .map_err(io)?;
        let mut open = OpenDay {
            day,
            path: path.clone(),
            frame: Frame::Closed(BufWriter::new(file)),
            unflushed: 0,
        };
        // The header is a frame of its own: damage elsewhere leaves it.
        writeln!(
            open.encoder().map_err(io)?,
            "{TAPE_HEADER} exchange={}",
            self.exchange
        )
        .map_err(io)?;
        open.end_frame().map_err(io)?;
        Ok(open)
    }
}

impl Drop for TapeWriter {
    fn drop(&mut self) {
        if let Err(e) = self.close_day() {
            tracing::error!(error = %e, "closing tape on drop");
        }
    }
}

/// Writes one tape line for `msg` into `line` (cleared first).
fn encode_line(line: &mut String, msg: &RawMessage) {
    use std::fmt::Write as _;
    line.clear();
    let _ = write!(line, "{} ", msg.ts_received.0);
    match &msg.origin {
        Origin::Rest { url } => {
            let body = serde_json::json!({ "url": url, "data": msg.data });
            let _ = write!(line, "h {body}");
        }
        Origin::Ws if msg.data.contains(['\n', '\r']) => {
            let _ = write!(line, "j {}", serde_json::Value::String(msg.data.clone()));
        }
        Origin::Ws => {
            line.push_str("r ");
            line.push_str(&msg.data);
        }
    }
    line.push('\n');
}

/// Reads one tape line back. `None` for the header and blank lines.
pub(crate) fn decode_line(exchange: Exchange, line: &str) -> Option<Result<RawMessage, String>> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let parsed = (|| {
        let (ts, rest) = line.split_once(' ').ok_or("no timestamp")?;
        let ts: i64 = ts.parse().map_err(|_| "bad timestamp")?;
        let (kind, payload) = rest.split_once(' ').ok_or("no record kind")?;
        let (origin, data) = match kind {
            "r" => (Origin::Ws, payload.to_owned()),
            "j" => (
                Origin::Ws,
                serde_json::from_str::<String>(payload).map_err(|_| "bad escaped frame")?,
            ),
            "h" => {
                #[derive(serde::Deserialize)]
                struct Rest {
                    url: String,
                    data: String,
                }
                let r: Rest = serde_json::from_str(payload).map_err(|_| "bad REST record")?;
                (Origin::Rest { url: r.url }, r.data)
            }
            _ => return Err("unknown record kind"),
        };
        Ok(RawMessage {
            exchange,
            ts_received: Ts(ts),
            origin,
            data,
        })
    })();
    Some(parsed.map_err(|e: &str| e.to_owned()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::recordings::Recording;

    /// A Binance WebSocket frame received at `ts`.
    pub(crate) fn msg(ts: i64, data: &str) -> RawMessage {
        RawMessage {
            exchange: Exchange::Binance,
            ts_received: Ts(ts),
            origin: Origin::Ws,
            data: data.into(),
        }
    }

    #[test]
    fn round_trip_rotates_by_day() {
        let dir = tempfile::tempdir().expect("tempdir");
        let day1 = Ts::parse("2024-08-08T23:59:59Z").expect("t").0;
        let day2 = Ts::parse("2024-08-09T00:00:01Z").expect("t").0;
        let written = vec![
            msg(day1, r#"{"a":1}"#),
            msg(day1 + 1, "two\nlines"),
            RawMessage {
                origin: Origin::Rest {
                    url: "https://x/exchangeInfo".into(),
                },
                ..msg(day1 + 2, "{\"symbols\":[]}")
            },
            msg(day2, r#"{"b":2}"#),
        ];
        let mut w = TapeWriter::new(dir.path(), Exchange::Binance, 2);
        for m in &written {
            w.write(m).expect("write");
        }
        drop(w);
        let f1 = TapeWriter::path_for(dir.path(), Exchange::Binance, Ts(day1).day_start());
        let f2 = TapeWriter::path_for(dir.path(), Exchange::Binance, Ts(day2).day_start());
        assert!(
            f1.ends_with("binance/2024-08-08.tape.zst"),
            "{}",
            f1.display()
        );
        let mut back = Vec::new();
        for f in [f1, f2] {
            for r in Recording::open(&f).expect("open") {
                back.push(r.expect("record"));
            }
        }
        assert_eq!(back, written);
    }

    #[test]
    fn a_crash_keeps_the_flushed_part_and_a_restart_starts_a_new_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Ts::parse("2024-01-01T10:00:00Z").expect("t").0;
        // A writer that dies after a flush: the flushed lines survive.
        let mut w = TapeWriter::new(dir.path(), Exchange::Binance, 1);
        w.write(&msg(t, r#"{"n":0}"#)).expect("write");
        std::mem::forget(w); // no finish, no fsync: like a crash
        let first = TapeWriter::path_for(dir.path(), Exchange::Binance, Ts(t).day_start());
        // Two restarts the same day, each finished cleanly.
        for i in 1..3 {
            let mut w = TapeWriter::new(dir.path(), Exchange::Binance, 1);
            w.write(&msg(t + i, &format!("{{\"n\":{i}}}")))
                .expect("write");
        }
        let mut files: Vec<PathBuf> = fs::read_dir(first.parent().expect("dir"))
            .expect("list")
            .map(|e| e.expect("entry").path())
            .collect();
        files.sort();
        let names: Vec<String> = files
            .iter()
            .map(|p| p.file_name().expect("name").to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "2024-01-01.tape.zst",
                "2024-01-01_r001.tape.zst",
                "2024-01-01_r002.tape.zst"
            ]
        );
        let read: Vec<String> = files
            .iter()
            .flat_map(|p| Recording::open(p).expect("open").filter_map(Result::ok))
            .map(|r| r.data)
            .collect();
        assert_eq!(
            read,
            [r#"{"n":0}"#, r#"{"n":1}"#, r#"{"n":2}"#],
            "the crashed segment's flushed line, then both restarts, in order"
        );
    }

    #[test]
    fn damage_costs_only_its_frames_and_is_reported_never_read_as_data() {
        let dir = tempfile::tempdir().expect("tempdir");
        let t = Ts::parse("2024-01-01T10:00:00Z").expect("t").0;
        let written: Vec<RawMessage> = (0..40)
            .map(|i| msg(t + i, &format!("{{\"price\":\"{}.{i:02}\"}}", 60_000 + i)))
            .collect();
        let mut w = TapeWriter::new(dir.path(), Exchange::Binance, 4);
        for m in &written {
            w.write(m).expect("write");
        }
        drop(w);
        let path = TapeWriter::path_for(dir.path(), Exchange::Binance, Ts(t).day_start());
        let mut bytes = fs::read(&path).expect("read");
        // Eight bytes overwritten in the middle of the file.
        let middle = bytes.len() / 2;
        for b in &mut bytes[middle..middle + 8] {
            *b = 0x5a;
        }
        fs::write(&path, &bytes).expect("write");
        let (mut good, mut damaged) = (Vec::new(), Vec::new());
        for r in Recording::open(&path).expect("open") {
            match r {
                Ok(m) => good.push(m),
                Err(e) => damaged.push(e),
            }
        }
        assert_eq!(damaged.len(), 1, "one frame skipped: {damaged:?}");
        assert!(
            damaged[0].message.contains("damaged zstd frame"),
            "{damaged:?}"
        );
        assert!(
            good.len() >= written.len() - 8 && good.len() < written.len(),
            "only the damaged frame's messages are lost: {} of {}",
            good.len(),
            written.len()
        );
        for m in &good {
            assert!(written.contains(m), "never a wrong message: {m:?}");
        }
        assert_eq!(good.last(), written.last(), "the frames after it read");
    }
}
