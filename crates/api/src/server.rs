//! The HTTP server: the router on hyper's HTTP/1.1, with an accept loop of
//! our own so that every refusal is the API's JSON error.
//!
//! hyper refuses a request head it cannot hold by itself, before any router
//! sees it, with an empty body (414 for a URI over 64 KiB, 431 for a head
//! over its buffer, 400 for a malformed one). So:
//! - hyper's limits are raised well above ours, and [`limits`] refuses a
//!   URI over [`MAX_URI`] bytes (414), or over [`MAX_HEADERS`] headers or
//!   [`MAX_HEAD`] bytes of them (431), with the JSON error;
//! - what is still beyond hyper (a URI over 64 KiB, a head over 1 MiB,
//!   bytes that are not HTTP) gets hyper's answer rewritten on its way out
//!   into the same JSON ([`JsonRefusals`]).
//!
//! A request head must arrive within [`HEAD_TIMEOUT`]: a client that trickles
//! it in (slowloris) is cut off.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

use crate::error::error_response;

/// The longest request URI (path and query) served: 8 KiB.
pub(crate) const MAX_URI: usize = 8 * 1024;
/// The most request headers.
pub(crate) const MAX_HEADERS: usize = 100;
/// The most bytes of request headers (names and values).
pub(crate) const MAX_HEAD: usize = 64 * 1024;
/// How long a client may take to send a request head.
pub(crate) const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// The longest head hyper writes for a refusal (a status line, its length
/// and date): anything longer is not one.
const REFUSAL_HEAD_MAX: usize = 512;

/// hyper's own read buffer, and the headers it parses: above ours.
const HYPER_BUFFER: usize = 1024 * 1024;
const HYPER_HEADERS: usize = 1024;

/// Refuses a request whose URI or headers are over the limits, with the
/// JSON error (a layer of the router).
pub(crate) async fn limits(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let uri = request.uri();
    let uri = uri.path().len() + uri.query().map_or(0, |q| q.len() + 1);
    if uri > MAX_URI {
        return error_response(
            StatusCode::URI_TOO_LONG,
            format!("the URI is {uri} bytes; at most {MAX_URI} are served"),
        );
    }
    let headers = request.headers();
    let bytes: usize = headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if headers.len() > MAX_HEADERS || bytes > MAX_HEAD {
        return error_response(
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            format!(
                "{} headers of {bytes} bytes; at most {MAX_HEADERS} headers of {MAX_HEAD} bytes are served",
                headers.len()
            ),
        );
    }
    next.run(request).await
}

/// Serves `app` on `listener` until `shutdown` resolves, then lets open
/// requests finish.
///
/// # Errors
/// Never today: accept errors (too many open files) are logged and retried.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    let stop = tokio_util::sync::CancellationToken::new();
    let connections = TaskTracker::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "the API could not accept a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let app = app.clone();
        let stopped = stop.clone();
        connections.spawn(async move {
            let service =
                hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(peer));
                    let app = app.clone();
                    async move {
                        Ok::<_, Infallible>(
                            app.oneshot(request.map(axum::body::Body::new))
                                .await
                                .unwrap_or_else(|never| match never {}),
                        )
                    }
                });
            let mut http = hyper::server::conn::http1::Builder::new();
            http.max_buf_size(HYPER_BUFFER)
                .max_headers(HYPER_HEADERS)
                .timer(TokioTimer::new())
                .header_read_timeout(HEAD_TIMEOUT);
            let io = TokioIo::new(JsonRefusals::new(stream));
            let connection = http.serve_connection(io, service).with_upgrades();
            let mut connection = std::pin::pin!(connection);
            tokio::select! {
                served = connection.as_mut() => {
                    if let Err(e) = served {
                        tracing::debug!(error = %e, %peer, "API connection ended");
                    }
                }
                () = stopped.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    drop(listener);
    stop.cancel();
    connections.close();
    connections.wait().await;
    Ok(())
}

/// A connection whose automatic refusals from hyper (a status line, an empty
/// body, nothing else) go out as the API's JSON error instead.
struct JsonRefusals<T> {
    inner: T,
    /// A rewritten refusal being written, and how much of it is out.
    pending: Option<(Vec<u8>, usize)>,
}

impl<T> JsonRefusals<T> {
    fn new(inner: T) -> Self {
        JsonRefusals {
            inner,
            pending: None,
        }
    }
}

impl<T: AsyncWrite + Unpin> JsonRefusals<T> {
    /// Writes what is left of a rewritten refusal.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, done)) = &mut self.pending {
            if *done >= bytes.len() {
                self.pending = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*done..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *done += n;
        }
        Poll::Ready(Ok(()))
    }
}

/// hyper's automatic answer to a request it could not read, rewritten as
/// the JSON error; `None` for anything else.
fn rewrite_refusal(written: &[u8]) -> Option<Vec<u8>> {
    // Every write of every response comes here: tell the refusal, a short
    // head alone, by its first bytes before reading it as text.
    let status = written.strip_prefix(b"HTTP/1.1 ")?.get(..4)?;
    if written.len() > REFUSAL_HEAD_MAX || !matches!(status, b"400 " | b"414 " | b"431 ") {
        return None;
    }
    let head = std::str::from_utf8(written).ok()?;
    let rest = head.strip_prefix("HTTP/1.1 ")?;
    let code: u16 = rest.get(..3)?.parse().ok()?;
    let status = StatusCode::from_u16(code).ok()?;
    let automatic = matches!(
        status,
        StatusCode::BAD_REQUEST
            | StatusCode::URI_TOO_LONG
            | StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let empty = head
        .to_ascii_lowercase()
        .contains("\r\ncontent-length: 0\r\n");
    if !(automatic && empty && head.ends_with("\r\n\r\n")) {
        return None;
    }
    let message = match status {
        StatusCode::URI_TOO_LONG => format!("the URI is over {MAX_URI} bytes"),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            format!("the request headers are over {MAX_HEAD} bytes or {MAX_HEADERS} headers")
        }
        _ => "the request is not valid HTTP/1.1".to_owned(),
    };
    let body = serde_json::json!({"error": {"status": code, "message": message}}).to_string();
    Some(
        format!(
            "HTTP/1.1 {code} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            status.canonical_reason().unwrap_or("Error"),
            body.len()
        )
        .into_bytes(),
    )
}

impl<T: AsyncRead + Unpin> AsyncRead for JsonRefusals<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for JsonRefusals<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        if let Some(json) = rewrite_refusal(buf) {
            self.pending = Some((json, 0));
            // Taken whole; written by this call or the flush that follows.
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        // hyper's automatic refusal is a head alone, in one slice.
        if let [only] = bufs
            && let Some(json) = rewrite_refusal(only)
        {
            self.pending = Some((json, 0));
            let _ = self.drain(cx)?;
            return Poll::Ready(Ok(only.len()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hyper_s_empty_refusals_are_rewritten() {
        let refusal = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 09:00:00 GMT\r\n\r\n";
        let json = String::from_utf8(rewrite_refusal(refusal).expect("rewritten")).expect("text");
        assert!(json.starts_with("HTTP/1.1 431 "), "{json}");
        let body = json.split("\r\n\r\n").nth(1).expect("body");
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["error"]["status"], 431);
        assert!(json.contains(&format!("content-length: {}\r\n", body.len())));
        for kept in [
            &b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 90\r\n\r\n",
            b"{\"error\":1}",
        ] {
            assert_eq!(rewrite_refusal(kept), None);
        }
    }
}
