//! Bounding the length of a line in files read line by line (imports,
//! recordings): a file without newlines fails at once, rather than being
//! read into memory whole.

/// The longest line read (64 MiB: real recordings hold REST answers of
/// several MB on one line, such as a venue's instrument list).
pub const MAX_LINE: usize = 64 << 20;

/// A reader that fails once a line grows past [`MAX_LINE`] bytes.
pub(crate) struct LineBound<R> {
    inner: R,
    since_newline: usize,
}

impl<R> LineBound<R> {
    /// Bounds the lines of `inner`.
    pub(crate) fn new(inner: R) -> LineBound<R> {
        LineBound {
            inner,
            since_newline: 0,
        }
    }
}

impl<R: std::io::Read> std::io::Read for LineBound<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        match buf[..n].iter().rposition(|b| *b == b'\n') {
            Some(at) => self.since_newline = n - at - 1,
            None => self.since_newline += n,
        }
        if self.since_newline > MAX_LINE {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("a line longer than {MAX_LINE} bytes: is this a text file of lines?"),
            ));
        }
        Ok(n)
    }
}
