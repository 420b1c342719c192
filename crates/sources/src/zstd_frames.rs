//! Reading a zstd file frame by frame, so that damage costs only the frames
//! it touches.
//!
//! Tapes end a frame, with zstd's content checksum, every few hundred
//! messages (see [`crate::tape`]). [`ZstdFrames`] walks the file's frames
//! by their block headers, decodes each checksummed frame whole, and serves
//! its bytes only once the checksum holds: a frame that fails is skipped
//! whole, and the read that reaches it fails once with a [`DamagedFrame`]
//! (kind `InvalidData`); reading on continues with the next frame. A frame
//! without a checksum (tapes written before checksums, a whole day in one
//! frame, or files of other tools) and a very large one are streamed, with
//! the rest of the file, as a plain decoder would: an error there ends the
//! file.

use std::fs::File;
use std::io::{self, BufReader, Read, Seek, SeekFrom};

/// zstd's frame magic number, little-endian on disk.
const MAGIC: u32 = 0xFD2F_B528;
/// Skippable frames: magic numbers `0x184D2A50` to `0x184D2A5F`.
const SKIPPABLE: u32 = 0x184D_2A50;
/// The largest block zstd writes.
const MAX_BLOCK: u32 = 128 * 1024;
/// Checksummed frames up to this size are decoded whole; larger ones are
/// streamed (their checksum is still checked, at their end).
const MAX_CHECKED_FRAME: u64 = 64 << 20;

/// Damage found in a file: one read fails with it, then reading goes on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("damaged zstd frame at byte {offset}, {skipped} bytes skipped: {reason}")]
pub struct DamagedFrame {
    /// Where the damaged frame starts in the file.
    pub offset: u64,
    /// How many bytes of the file were skipped.
    pub skipped: u64,
    /// What was wrong.
    pub reason: String,
}

/// True when `e` reports a [`DamagedFrame`]: the file reads on after it.
#[must_use]
pub fn is_damage(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<DamagedFrame>().is_some())
}

/// The shape of one frame, from its headers.
enum Shape {
    /// A zstd frame of `len` bytes, with or without a content checksum.
    Frame { len: u64, checksum: bool },
    /// A skippable frame of `len` bytes.
    Skippable { len: u64 },
    /// The file ends inside the frame.
    Truncated,
    /// The headers make no sense here.
    Corrupt(String),
}

/// A zstd file read frame by frame: see the module documentation.
pub struct ZstdFrames {
    file: BufReader<File>,
    /// The file's length.
    len: u64,
    /// Where the next frame starts.
    offset: u64,
    /// Decoded bytes of the current frame, and how far they were served.
    out: Vec<u8>,
    served: usize,
    /// Set once a frame is streamed: the rest of the file goes through it.
    stream: Option<zstd::stream::read::Decoder<'static, BufReader<File>>>,
    done: bool,
}

impl ZstdFrames {
    /// Reads `file` from its start.
    pub fn new(file: File) -> io::Result<ZstdFrames> {
        let len = file.metadata()?.len();
        Ok(ZstdFrames {
            file: BufReader::with_capacity(1 << 16, file),
            len,
            offset: 0,
            out: Vec::new(),
            served: 0,
            stream: None,
            done: false,
        })
    }

    fn read_u32(&mut self) -> io::Result<Option<u32>> {
        let mut b = [0u8; 4];
        match self.file.read_exact(&mut b) {
            Ok(()) => Ok(Some(u32::from_le_bytes(b))),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The shape of the frame at `self.offset`, read from its headers
    /// (the file is left somewhere inside it).
    fn shape(&mut self) -> io::Result<Shape> {
        self.file.seek(SeekFrom::Start(self.offset))?;
        let Some(magic) = self.read_u32()? else {
            return Ok(Shape::Truncated);
        };
        if magic & 0xFFFF_FFF0 == SKIPPABLE {
            return Ok(match self.read_u32()? {
                Some(size) => Shape::Skippable {
                    len: 8 + u64::from(size),
                },
                None => Shape::Truncated,
            });
        }
        if magic != MAGIC {
            return Ok(Shape::Corrupt(format!(
                "no frame starts here ({magic:#010x})"
            )));
        }
        let mut descriptor = [0u8; 1];
        if self.file.read_exact(&mut descriptor).is_err() {
            return Ok(Shape::Truncated);
        }
        let d = descriptor[0];
        if d & 0x08 != 0 {
            return Ok(Shape::Corrupt("a reserved header bit is set".into()));
        }
        let single_segment = d & 0x20 != 0;
        let checksum = d & 0x04 != 0;
        let dict_id = [0u64, 1, 2, 4][usize::from(d & 0x03)];
        let content_size = match d >> 6 {
            0 => u64::from(single_segment),
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let header = 5 + u64::from(!single_segment) + dict_id + content_size;
        let mut at = header;
        loop {
            if self.offset + at + 3 > self.len {
                return Ok(Shape::Truncated);
            }
            self.file.seek(SeekFrom::Start(self.offset + at))?;
            let mut h = [0u8; 3];
            self.file.read_exact(&mut h)?;
            let h = u32::from(h[0]) | u32::from(h[1]) << 8 | u32::from(h[2]) << 16;
            let (last, kind, size) = (h & 1 == 1, (h >> 1) & 3, h >> 3);
            let body = match kind {
                0 | 2 if size <= MAX_BLOCK => u64::from(size),
                1 => 1,
                _ => return Ok(Shape::Corrupt(format!("a block header reads {h:#08x}"))),
            };
            at += 3 + body;
            if last {
                at += if checksum { 4 } else { 0 };
                if self.offset + at > self.len {
                    return Ok(Shape::Truncated);
                }
                return Ok(Shape::Frame { len: at, checksum });
            }
        }
    }

    /// Where the next frame magic is after `from`, or the end of the file.
    fn next_magic(&mut self, from: u64) -> io::Result<u64> {
        self.file.seek(SeekFrom::Start(from))?;
        let needle = MAGIC.to_le_bytes();
        let mut window: Vec<u8> = Vec::with_capacity(1 << 16);
        let mut base = from;
        loop {
            let mut chunk = [0u8; 1 << 15];
            let n = self.file.read(&mut chunk)?;
            if n == 0 {
                return Ok(self.len);
            }
            window.extend_from_slice(&chunk[..n]);
            if let Some(i) = window.windows(4).position(|w| w == needle) {
                return Ok(base + i as u64);
            }
            // Keep the last three bytes: a magic may straddle two chunks.
            let keep = window.len().saturating_sub(3);
            window.drain(..keep);
            base += keep as u64;
        }
    }

    /// Moves on to the next frame: fills `out`, starts streaming, or
    /// reports damage.
    fn advance(&mut self) -> io::Result<()> {
        let start = self.offset;
        if start >= self.len {
            self.done = true;
            return Ok(());
        }
        match self.shape()? {
            Shape::Skippable { len } => self.offset = start + len,
            Shape::Frame { len, checksum } if checksum && len <= MAX_CHECKED_FRAME => {
                self.file.seek(SeekFrom::Start(start))?;
                let mut frame = vec![0u8; usize::try_from(len).map_err(io::Error::other)?];
                self.file.read_exact(&mut frame)?;
                self.offset = start + len;
                match zstd::stream::decode_all(&frame[..]) {
                    Ok(bytes) => {
                        self.out = bytes;
                        self.served = 0;
                    }
                    Err(e) => return Err(damage(start, len, e.to_string())),
                }
            }
            Shape::Frame { .. } => {
                // Without a checksum, or very large: the rest of the file
                // streams, as a plain decoder reads it.
                let mut file = self.file.get_ref().try_clone()?;
                file.seek(SeekFrom::Start(start))?;
                self.stream = Some(zstd::stream::read::Decoder::new(file)?);
            }
            Shape::Truncated => {
                self.done = true;
                return Err(damage(
                    start,
                    self.len - start,
                    "the file ends inside this frame (cut short, or a crash mid-write)".into(),
                ));
            }
            Shape::Corrupt(reason) => {
                let next = self.next_magic(start + 1)?;
                self.offset = next;
                return Err(damage(start, next - start, reason));
            }
        }
        Ok(())
    }
}

fn damage(offset: u64, skipped: u64, reason: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        DamagedFrame {
            offset,
            skipped,
            reason,
        },
    )
}

impl Read for ZstdFrames {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some(stream) = &mut self.stream {
                return stream.read(buf);
            }
            if self.served < self.out.len() {
                let n = buf.len().min(self.out.len() - self.served);
                buf[..n].copy_from_slice(&self.out[self.served..self.served + n]);
                self.served += n;
                return Ok(n);
            }
            if self.done || buf.is_empty() {
                return Ok(0);
            }
            self.advance()?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `frames` as checksummed zstd frames, one after another.
    fn frames(frames: &[&str], checksum: bool) -> Vec<u8> {
        let mut out = Vec::new();
        for f in frames {
            let mut e = zstd::stream::write::Encoder::new(Vec::new(), 1).expect("encoder");
            e.include_checksum(checksum).expect("checksum");
            e.write_all(f.as_bytes()).expect("write");
            out.extend(e.finish().expect("finish"));
        }
        out
    }

    /// Reads `bytes` through [`ZstdFrames`]: the text, and the damage.
    fn read(bytes: &[u8]) -> (String, Vec<DamagedFrame>) {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("f.zst");
        std::fs::write(&path, bytes).expect("write");
        let mut r = ZstdFrames::new(File::open(&path).expect("open")).expect("frames");
        let (mut text, mut damage) = (Vec::new(), Vec::new());
        let mut buf = [0u8; 7];
        loop {
            match r.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => text.extend_from_slice(&buf[..n]),
                Err(e) if is_damage(&e) => damage.push(
                    e.into_inner()
                        .and_then(|i| i.downcast::<DamagedFrame>().ok())
                        .map(|d| *d)
                        .expect("damage"),
                ),
                Err(e) => panic!("{e}"),
            }
        }
        (String::from_utf8(text).expect("utf8"), damage)
    }

    #[test]
    fn whole_frames_read_in_order() {
        let bytes = frames(&["a\n", "bb\n", "ccc\n"], true);
        assert_eq!(read(&bytes), ("a\nbb\nccc\n".into(), vec![]));
        let plain = frames(&["a\n", "bb\n"], false);
        assert_eq!(read(&plain), ("a\nbb\n".into(), vec![]), "no checksum");
    }

    #[test]
    fn a_frame_that_fails_its_checksum_is_skipped_whole() {
        let text: Vec<String> = (0..3)
            .map(|i| format!("line {i} {}\n", "x".repeat(50)))
            .collect();
        let parts: Vec<&str> = text.iter().map(String::as_str).collect();
        let mut bytes = frames(&parts, true);
        let first_len = frames(&parts[..1], true).len();
        // Flip a byte of the second frame's checksum.
        let second_end = frames(&parts[..2], true).len();
        bytes[second_end - 1] ^= 0xff;
        let (read_text, damage) = read(&bytes);
        assert_eq!(read_text, format!("{}{}", text[0], text[2]));
        assert_eq!(damage.len(), 1, "{damage:?}");
        assert_eq!(damage[0].offset, first_len as u64);
        assert!(damage[0].reason.contains("checksum"), "{damage:?}");
    }

    #[test]
    fn a_broken_header_skips_to_the_next_frame_and_a_cut_tail_is_reported() {
        let bytes = frames(&["one\n", "two\n", "three\n"], true);
        let first_len = frames(&["one\n"], true).len();
        let mut broken = bytes.clone();
        // The second frame's descriptor byte gets a reserved bit.
        broken[first_len + 4] |= 0x08;
        let (text, damage) = read(&broken);
        assert_eq!(text, "one\nthree\n");
        assert_eq!(damage.len(), 1);
        assert!(damage[0].reason.contains("reserved"), "{damage:?}");
        // Cut inside the last frame.
        let cut = &bytes[..bytes.len() - 3];
        let (text, damage) = read(cut);
        assert_eq!(text, "one\ntwo\n");
        assert!(damage[0].reason.contains("ends inside"), "{damage:?}");
    }
}
