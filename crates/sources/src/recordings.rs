//! Reading recorded traffic: candlekeep tapes and the fixture formats.
//!
//! [`Recording::open`] looks at a file's first bytes and line to pick the format:
//! - candlekeep tape (`*.tape.zst`, see [`crate::tape`]);
//! - cryptofeed v3 (`*.jsonl.zst`): JSON lines with a `header`, then `recv`
//!   (WebSocket frames) and `http` (REST responses) records;
//! - cryptofeed's text recordings (its raw data collection, 2020 to 2022,
//!   called v1 here): `<time>: <frame>` lines, `<url> -> <time>: <body>` for
//!   REST, `<url> <- <time>: <sent>` and `<url> <-> <time>` for what the
//!   client sent and its connections; some versions begin with a
//!   `configuration: {…}` line. The time is unix seconds with a fraction,
//!   or, in versions that stamped `time.time_ns()`, whole nanoseconds (read
//!   by magnitude). A file is named after its connection: `COINBASE.ws.28.0`,
//!   or `BINANCE-<hex>.0` in versions that added a random id;
//! - hftbacktest (`*.gz`): `<receive ns> <Binance combined-stream JSON>` lines.
//!
//! Every record comes back as a [`RawMessage`], so replay feeds the same
//! parsers as live capture. A bad line is an error item naming its line
//! number; reading goes on after it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use ck_bus::{Origin, RawMessage};
use ck_model::{Exchange, Ts};
use serde_json::value::RawValue;

use crate::line_bound::LineBound;
use crate::tape::{TAPE_HEADER, decode_line};

/// Why a recording could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The format or the exchange could not be recognized.
    #[error("{path}: {reason}")]
    Unrecognized {
        /// The file.
        path: PathBuf,
        /// What is missing.
        reason: String,
    },
}

/// One record that could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct RecordError {
    /// 1-based line number in the (decompressed) file.
    pub line: usize,
    /// What was wrong.
    pub message: String,
    /// The start of the line.
    pub excerpt: String,
}

/// The format of a recording.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A candlekeep tape.
    Tape,
    /// cryptofeed v3 JSON lines.
    CryptofeedV3,
    /// cryptofeed v1 text.
    CryptofeedV1,
    /// hftbacktest gzip text.
    Hftbacktest,
}

/// An open recording: an iterator of raw messages.
pub struct Recording {
    format: Format,
    exchange: Exchange,
    lines: Box<dyn BufRead + Send>,
    line_no: usize,
    buf: String,
    /// Lines read while detecting the format, still to be served.
    pending: std::collections::VecDeque<String>,
    /// A read error met while detecting the format, served after them.
    head_error: Option<io::Error>,
    failed: bool,
    /// cryptofeed connections to derivative endpoints, which are skipped
    /// (Bybit's linear feed reuses the spot symbols).
    skipped_conns: std::collections::HashSet<String>,
}

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// The lines of a v1 text recording read to find its venue's URL.
const V1_HEAD_LINES: usize = 8;

/// `found` in `path`, unless `asked` names another exchange.
fn named(path: &Path, found: Exchange, asked: Option<Exchange>) -> Result<Exchange, OpenError> {
    match asked {
        Some(asked) if asked != found => Err(OpenError::Unrecognized {
            path: path.to_owned(),
            reason: format!("the recording names {found}, not {asked}"),
        }),
        _ => Ok(found),
    }
}
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

fn cryptofeed_exchange(name: &str) -> Option<Exchange> {
    crate::venues::by_cryptofeed_name(name).map(|v| v.exchange)
}

/// The exchange a v1 text recording belongs to: from a venue URL in its
/// first lines (which tells Coinbase Exchange, cryptofeed's `COINBASE` of
/// those years, from Advanced Trade), else from its file name
/// (`COINBASE_EXCHANGE.ws.28.0`, `KRAKEN-5f0c…e1.0`).
fn v1_exchange(path: &Path, head: &str) -> Option<Exchange> {
    let l = head.to_ascii_lowercase();
    let by_url = || {
        let urls: Vec<&str> = l
            .split(|c: char| c.is_whitespace() || c == '"' || c == '\'')
            .filter(|w| w.contains("://"))
            .collect();
        urls.iter().find_map(|u| venue_of_url(u))
    };
    let name = path.file_name()?.to_str()?;
    let stem = name.split('.').next().unwrap_or(name);
    // `BINANCE-<hex>`: the connection's random id follows the feed's name.
    let stem = match stem.rsplit_once('-') {
        Some((feed, id)) if id.len() >= 8 && id.bytes().all(|b| b.is_ascii_hexdigit()) => feed,
        _ => stem,
    };
    by_url().or_else(|| cryptofeed_exchange(stem))
}

/// The venue a WebSocket or REST URL of a recording belongs to.
fn venue_of_url(url: &str) -> Option<Exchange> {
    let host = url.split("://").nth(1)?.split(['/', ':', '?']).next()?;
    crate::venues::by_host(host).map(|v| v.exchange)
}

impl Recording {
    /// Opens `path`, detecting its format and exchange.
    pub fn open(path: &Path) -> Result<Recording, OpenError> {
        Recording::open_as(path, None)
    }

    /// Opens `path`, detecting its format; its exchange is `exchange` when
    /// given (for a file whose name and content do not say it), else
    /// detected. A tape or a cryptofeed v3 file that names another exchange
    /// is refused.
    pub fn open_as(path: &Path, exchange: Option<Exchange>) -> Result<Recording, OpenError> {
        let io = |source| OpenError::Io {
            path: path.to_owned(),
            source,
        };
        let unrecognized = |reason: &str| OpenError::Unrecognized {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let mut file = File::open(path).map_err(io)?;
        let mut magic = [0u8; 4];
        let n = read_up_to(&mut file, &mut magic).map_err(io)?;
        let file = File::open(path).map_err(io)?;
        let mut lines: Box<dyn BufRead + Send> = if n >= 4 && magic == ZSTD_MAGIC {
            // Frame by frame: a damaged frame is skipped and reported.
            Box::new(BufReader::with_capacity(
                1 << 16,
                LineBound::new(crate::zstd_frames::ZstdFrames::new(file).map_err(io)?),
            ))
        } else if n >= 2 && magic[..2] == GZIP_MAGIC {
            Box::new(BufReader::with_capacity(
                1 << 16,
                LineBound::new(flate2::read::MultiGzDecoder::new(file)),
            ))
        } else {
            Box::new(BufReader::with_capacity(1 << 16, LineBound::new(file)))
        };
        let mut first = String::new();
        lines.read_line(&mut first).map_err(io)?;
        let mut head_lines = Vec::new();
        let mut head_error = None;
        let first_trimmed = first.trim_end();
        let (format, exchange, pending) =
            if let Some(rest) = first_trimmed.strip_prefix(TAPE_HEADER) {
                let name = rest
                    .trim()
                    .strip_prefix("exchange=")
                    .ok_or_else(|| unrecognized("tape header names no exchange"))?;
                let ex = name
                    .parse::<Exchange>()
                    .map_err(|e| unrecognized(&e.to_string()))?;
                (Format::Tape, named(path, ex, exchange)?, None)
            } else if first_trimmed.starts_with("{\"t\":\"header\"")
                || first_trimmed.starts_with("{\"t\": \"header\"")
            {
                #[derive(serde::Deserialize)]
                struct Header {
                    exchange: String,
                }
                let h: Header = serde_json::from_str(first_trimmed)
                    .map_err(|e| unrecognized(&format!("bad cryptofeed header: {e}")))?;
                let ex = cryptofeed_exchange(&h.exchange).ok_or_else(|| {
                    unrecognized(&format!("unknown cryptofeed exchange `{}`", h.exchange))
                })?;
                (Format::CryptofeedV3, named(path, ex, exchange)?, None)
            } else if n >= 2 && magic[..2] == GZIP_MAGIC {
                // hftbacktest's examples are Binance combined streams.
                let ex = exchange.unwrap_or(Exchange::Binance);
                (Format::Hftbacktest, ex, Some(first.clone()))
            } else {
                // A venue URL is in the first lines: a `configuration:`
                // line may come before them. They are kept to be served.
                let mut head = vec![first.clone()];
                while head.len() < V1_HEAD_LINES {
                    let mut line = String::new();
                    match lines.read_line(&mut line) {
                        Ok(0) => break,
                        Ok(_) => head.push(line),
                        // Served in its place, after the lines before it.
                        Err(e) => {
                            head_error = Some(e);
                            break;
                        }
                    }
                }
                let ex = match exchange {
                    Some(ex) => ex,
                    None => v1_exchange(path, &head.concat()).ok_or_else(|| {
                        unrecognized(
                            "not a known recording format, and no exchange in its name \
                             or its URLs (name one with --exchange)",
                        )
                    })?,
                };
                head_lines = head;
                (Format::CryptofeedV1, ex, None)
            };
        let line_no = usize::from(pending.is_none() && format != Format::CryptofeedV1);
        let mut pending: std::collections::VecDeque<String> = pending.into_iter().collect();
        pending.extend(head_lines);
        Ok(Recording {
            format,
            exchange,
            lines,
            line_no,
            buf: String::new(),
            pending,
            head_error,
            failed: false,
            skipped_conns: std::collections::HashSet::new(),
        })
    }

    /// The detected format.
    #[must_use]
    pub fn format(&self) -> Format {
        self.format
    }

    /// The exchange the recording belongs to.
    #[must_use]
    pub fn exchange(&self) -> Exchange {
        self.exchange
    }

    fn decode(&mut self, line: &str) -> Option<Result<RawMessage, String>> {
        let ex = self.exchange;
        match self.format {
            Format::Tape => decode_line(ex, line),
            Format::CryptofeedV3 => decode_cryptofeed_v3(ex, line, &mut self.skipped_conns),
            Format::CryptofeedV1 => decode_cryptofeed_v1(ex, line),
            Format::Hftbacktest => decode_hftbacktest(ex, line),
        }
    }
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

impl Iterator for Recording {
    type Item = Result<RawMessage, RecordError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.failed {
                return None;
            }
            if self.pending.is_empty()
                && let Some(e) = self.head_error.take()
            {
                self.failed = true;
                return Some(Err(RecordError {
                    line: self.line_no + 1,
                    message: format!("stopped reading: {e}"),
                    excerpt: String::new(),
                }));
            }
            let mut line = match self.pending.pop_front() {
                Some(l) => l,
                None => {
                    self.buf.clear();
                    match self.lines.read_line(&mut self.buf) {
                        Ok(0) => return None,
                        Ok(_) => std::mem::take(&mut self.buf),
                        Err(e) if crate::zstd_frames::is_damage(&e) => {
                            // A damaged frame, skipped whole: reading goes on.
                            return Some(Err(RecordError {
                                line: self.line_no + 1,
                                message: format!("skipped: {e}"),
                                excerpt: String::new(),
                            }));
                        }
                        Err(e) => {
                            // A truncated compressed tail (a crash mid-write):
                            // everything before it was delivered.
                            self.failed = true;
                            return Some(Err(RecordError {
                                line: self.line_no + 1,
                                message: format!("stopped reading: {e}"),
                                excerpt: String::new(),
                            }));
                        }
                    }
                }
            };
            self.line_no += 1;
            if line.ends_with('\n') {
                line.pop();
                if line.ends_with('\r') {
                    line.pop();
                }
            }
            if let Some(r) = self.decode(&line) {
                let line_no = self.line_no;
                return Some(r.map_err(|message| RecordError {
                    line: line_no,
                    message,
                    excerpt: line.chars().take(200).collect(),
                }));
            }
        }
    }
}

/// The exact time of a JSON number or string holding unix seconds.
fn raw_secs(raw: &RawValue) -> Result<Ts, String> {
    let text = raw.get().trim_matches('"');
    Ts::parse_unix_secs(text).map_err(|e| e.to_string())
}

fn decode_cryptofeed_v3(
    exchange: Exchange,
    line: &str,
    skipped_conns: &mut std::collections::HashSet<String>,
) -> Option<Result<RawMessage, String>> {
    #[derive(serde::Deserialize)]
    struct Record<'a> {
        t: &'a str,
        #[serde(default)]
        conn: Option<String>,
        #[serde(default)]
        addr: Option<String>,
        #[serde(borrow, default)]
        ts: Option<&'a RawValue>,
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        data: Option<String>,
    }
    if line.trim().is_empty() {
        return None;
    }
    let r: Record<'_> = match serde_json::from_str(line) {
        Ok(r) => r,
        Err(e) => return Some(Err(format!("bad cryptofeed record: {e}"))),
    };
    if r.t == "connect"
        && exchange == Exchange::Bybit
        && let (Some(conn), Some(addr)) = (&r.conn, &r.addr)
        && crate::bybit::is_derivatives_url(addr)
    {
        tracing::info!(%conn, %addr, "skipping a Bybit derivatives connection (candlekeep captures spot)");
        skipped_conns.insert(conn.clone());
    }
    if r.conn.as_ref().is_some_and(|c| skipped_conns.contains(c)) {
        return None;
    }
    let origin = match (r.t, r.url) {
        ("recv", _) => Origin::Ws,
        ("http", Some(url)) => Origin::Rest { url },
        // header, connect, send, and other bookkeeping.
        _ => return None,
    };
    Some((|| {
        let ts = raw_secs(r.ts.ok_or("record has no ts")?)?;
        let data = r.data.ok_or("record has no data")?;
        Ok(RawMessage {
            exchange,
            ts_received: ts,
            origin,
            data,
        })
    })())
}

fn decode_cryptofeed_v1(exchange: Exchange, line: &str) -> Option<Result<RawMessage, String>> {
    if line.trim().is_empty() || line.starts_with("configuration: ") {
        return None;
    }
    // A line that begins with a URL (which has no space) says what it is
    // by the arrow after it: `->` a REST answer, `<-` what the client sent,
    // `<->` a connection. Any other line is `<time>: <frame>`, whatever
    // the frame holds.
    if let Some((url, rest)) = line.split_once(' ')
        && url.contains("://")
    {
        let Some(answer) = rest.strip_prefix("-> ") else {
            return None; // `<-` sent, `<->` connected
        };
        return Some((|| {
            let (ts, body) = answer.split_once(": ").ok_or("REST line has no body")?;
            Ok(RawMessage {
                exchange,
                ts_received: recorded_time(ts)?,
                origin: Origin::Rest {
                    url: url.to_owned(),
                },
                data: body.to_owned(),
            })
        })());
    }
    Some((|| {
        let (ts, frame) = line
            .split_once(": ")
            .ok_or("expected `<unix seconds>: <frame>`")?;
        if frame.starts_with("b'") || frame.starts_with("b\"") {
            return Err(
                "a binary frame written as Python bytes (OKEx v3, Huobi: compressed), which candlekeep does not read"
                    .to_owned(),
            );
        }
        Ok(RawMessage {
            exchange,
            ts_received: recorded_time(ts)?,
            origin: Origin::Ws,
            data: frame.to_owned(),
        })
    })())
}

/// A v1 line's time: unix seconds with a fraction, or whole seconds,
/// milliseconds or nanoseconds by magnitude (versions stamped `time_ns()`).
fn recorded_time(text: &str) -> Result<Ts, String> {
    crate::import::unix_time(text.trim(), crate::import::TsUnit::Auto)
}

fn decode_hftbacktest(exchange: Exchange, line: &str) -> Option<Result<RawMessage, String>> {
    if line.trim().is_empty() {
        return None;
    }
    Some((|| {
        let (ts, frame) = line
            .split_once(' ')
            .ok_or("expected `<receive ns> <frame>`")?;
        let ts: i64 = ts.parse().map_err(|_| format!("bad receive time `{ts}`"))?;
        Ok(RawMessage {
            exchange,
            ts_received: Ts(ts),
            origin: Origin::Ws,
            data: frame.to_owned(),
        })
    })())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_lines() {
        let ex = Exchange::CoinbaseExchange;
        let m = decode_cryptofeed_v1(ex, r#"1618677817.1295161: {"type":"match"}"#)
            .expect("some")
            .expect("ok");
        assert_eq!(
            (m.ts_received, m.origin),
            (Ts(1_618_677_817_129_516_100), Origin::Ws)
        );
        assert!(
            decode_cryptofeed_v1(ex, "wss://ws-feed.pro.coinbase.com <-> 1618677816.8434298")
                .is_none()
        );
        let rest = decode_cryptofeed_v1(
            ex,
            "https://api.pro.coinbase.com/products -> 1618677816.84: []",
        )
        .expect("some")
        .expect("ok");
        assert_eq!(
            rest.origin,
            Origin::Rest {
                url: "https://api.pro.coinbase.com/products".into()
            }
        );
        assert!(decode_cryptofeed_v1(ex, "garbage").expect("some").is_err());
    }

    #[test]
    fn v3_records_keep_exact_times() {
        let line =
            r#"{"t":"recv","conn":"BINANCE.ws.1","ts":1633998523.9630001,"data":"{\"x\":1}"}"#;
        let m = decode_cryptofeed_v3(Exchange::Binance, line, &mut Default::default())
            .expect("some")
            .expect("ok");
        assert_eq!(m.ts_received, Ts(1_633_998_523_963_000_100));
        assert_eq!(m.data, r#"{"x":1}"#);
        assert!(
            decode_cryptofeed_v3(
                Exchange::Binance,
                r#"{"t":"send","data":"x"}"#,
                &mut Default::default()
            )
            .is_none()
        );
        assert!(
            decode_cryptofeed_v3(Exchange::Binance, "{oops", &mut Default::default())
                .expect("some")
                .is_err()
        );
    }

    #[test]
    fn a_line_without_end_stops_the_recording_with_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        // A v1 text recording whose second line never ends.
        let path = dir.path().join("COINBASE_EXCHANGE.ws.1.0");
        let mut body = String::from("1618677817.1: {\"type\":\"heartbeat\"}\n1618677818.1: ");
        body.push_str(&"x".repeat(crate::line_bound::MAX_LINE + 100));
        std::fs::write(&path, body).expect("write");
        let records: Vec<_> = Recording::open(&path).expect("open").collect();
        let last = records.last().expect("records");
        let message = last
            .as_ref()
            .expect_err("the long line is an error")
            .message
            .clone();
        assert!(message.contains("a line longer than"), "{message}");
    }
}
