//! A small SMTP client (RFC 5321) for alert email: EHLO, STARTTLS when the
//! server offers it (then EHLO again over TLS, verified against the
//! web PKI roots), optional AUTH PLAIN (only over TLS), MAIL, RCPT, DATA
//! with dot-stuffing, QUIT. Every step has a timeout, and an unexpected
//! reply is an error that quotes it.

use std::sync::Arc;
use std::time::Duration;

use ck_model::Ts;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

const STEP: Duration = Duration::from_secs(15);

/// Login for servers that ask for one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user.
    pub username: String,
    /// The password.
    pub password: String,
}

/// Sends one plain-text message.
pub(crate) async fn send(
    server: &str,
    from: &str,
    to: &[String],
    subject: &str,
    body: &str,
    login: Option<&Credentials>,
    ca_file: Option<&str>,
) -> Result<(), String> {
    if to.is_empty() {
        return Err("no recipients".into());
    }
    let host = server
        .rsplit_once(':')
        .map_or(server, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let tcp = tokio::time::timeout(STEP, tokio::net::TcpStream::connect(server))
        .await
        .map_err(|_| format!("connecting to {server}: timed out"))?
        .map_err(|e| format!("connecting to {server}: {e}"))?;
    let mut plain = BufReader::new(tcp);
    expect(&mut plain, 220, "greeting").await?;
    let features = ehlo(&mut plain).await?;
    let message = message(from, to, subject, body);
    if features.iter().any(|f| f.eq_ignore_ascii_case("STARTTLS")) {
        command(&mut plain, "STARTTLS", 220).await?;
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            use rustls::pki_types::pem::PemObject as _;
            for cert in rustls::pki_types::CertificateDer::pem_file_iter(path)
                .map_err(|e| format!("reading {path}: {e}"))?
            {
                let cert = cert.map_err(|e| format!("reading {path}: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("a certificate in {path}: {e}"))?;
            }
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(host.clone())
            .map_err(|e| format!("`{host}` is not a TLS server name: {e}"))?;
        let tls = tokio::time::timeout(
            STEP,
            tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, plain.into_inner()),
        )
        .await
        .map_err(|_| "STARTTLS handshake: timed out".to_owned())?
        .map_err(|e| format!("STARTTLS handshake with {host}: {e}"))?;
        let mut secure = BufReader::new(tls);
        let features = ehlo(&mut secure).await?;
        if let Some(login) = login {
            auth_plain(&mut secure, &features, login).await?;
        }
        transaction(&mut secure, from, to, &message).await
    } else {
        if login.is_some() {
            return Err(format!(
                "{server} does not offer STARTTLS: refusing to send the password in clear"
            ));
        }
        transaction(&mut plain, from, to, &message).await
    }
}

async fn transaction<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    from: &str,
    to: &[String],
    message: &str,
) -> Result<(), String> {
    command(s, &format!("MAIL FROM:<{from}>"), 250).await?;
    for r in to {
        let (code, text) = send_line(s, &format!("RCPT TO:<{r}>")).await?;
        if code != 250 && code != 251 {
            return Err(format!("RCPT TO:<{r}> refused: {code} {text}"));
        }
    }
    command(s, "DATA", 354).await?;
    write(s, message).await?;
    expect(s, 250, "end of data").await?;
    // The message is accepted; a failed QUIT changes nothing.
    let _ = send_line(s, "QUIT").await;
    Ok(())
}

async fn ehlo<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
) -> Result<Vec<String>, String> {
    let (code, lines) = send_line_all(s, "EHLO candlekeep").await?;
    if code != 250 {
        return Err(format!("EHLO refused: {code} {}", lines.join(" ")));
    }
    Ok(lines
        .iter()
        .map(|l| l.split_whitespace().next().unwrap_or("").to_owned())
        .collect())
}

async fn auth_plain<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    features: &[String],
    login: &Credentials,
) -> Result<(), String> {
    let _ = features;
    let token = base64(format!("\0{}\0{}", login.username, login.password).as_bytes());
    command(s, &format!("AUTH PLAIN {token}"), 235).await
}

/// Sends a command and checks the reply code.
async fn command<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
    want: u16,
) -> Result<(), String> {
    let (code, text) = send_line(s, line).await?;
    if code == want {
        Ok(())
    } else {
        let shown = if line.starts_with("AUTH") {
            "AUTH PLAIN …"
        } else {
            line
        };
        Err(format!("`{shown}`: the server answered {code} {text}"))
    }
}

async fn send_line<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
) -> Result<(u16, String), String> {
    let (code, lines) = send_line_all(s, line).await?;
    Ok((code, lines.join(" ")))
}

async fn send_line_all<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    line: &str,
) -> Result<(u16, Vec<String>), String> {
    write(s, &format!("{line}\r\n")).await?;
    reply(s).await
}

async fn write<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    text: &str,
) -> Result<(), String> {
    let w = s.get_mut();
    tokio::time::timeout(STEP, async {
        w.write_all(text.as_bytes()).await?;
        w.flush().await
    })
    .await
    .map_err(|_| "writing to the SMTP server: timed out".to_owned())?
    .map_err(|e| format!("writing to the SMTP server: {e}"))
}

async fn expect<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut BufReader<S>,
    want: u16,
    what: &str,
) -> Result<(), String> {
    let (code, lines) = reply(s).await?;
    if code == want {
        Ok(())
    } else {
        Err(format!(
            "{what}: the server answered {code} {}",
            lines.join(" ")
        ))
    }
}

/// One reply: lines `NNN-text` then `NNN text`; the code and the texts.
async fn reply<S: AsyncRead + Unpin>(s: &mut BufReader<S>) -> Result<(u16, Vec<String>), String> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        let n = tokio::time::timeout(STEP, s.read_line(&mut line))
            .await
            .map_err(|_| "waiting for the SMTP server: timed out".to_owned())?
            .map_err(|e| format!("reading from the SMTP server: {e}"))?;
        if n == 0 {
            return Err("the SMTP server closed the connection".into());
        }
        let line = line.trim_end();
        let code: u16 = line
            .get(..3)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("not an SMTP reply: `{line}`"))?;
        lines.push(line.get(4..).unwrap_or("").to_owned());
        if line.as_bytes().get(3) != Some(&b'-') {
            return Ok((code, lines));
        }
    }
}

/// The message with headers, CRLF line ends, dot-stuffed, ending `.`.
fn message(from: &str, to: &[String], subject: &str, body: &str) -> String {
    let mut out = format!(
        "From: <{from}>\r\nTo: {}\r\nSubject: {}\r\nDate: {}\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n",
        to.iter()
            .map(|t| format!("<{t}>"))
            .collect::<Vec<_>>()
            .join(", "),
        subject.replace(['\r', '\n'], " "),
        rfc5322_date(Ts::now()),
    );
    for line in body.replace("\r\n", "\n").split('\n') {
        if line.starts_with('.') {
            out.push('.');
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(".\r\n");
    out
}

/// `Mon, 30 Nov 2026 12:00:00 +0000`.
fn rfc5322_date(t: Ts) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, d) = t.date();
    let secs = t.0.div_euclid(1_000_000_000);
    let day = secs.div_euclid(86_400);
    let in_day = secs.rem_euclid(86_400);
    format!(
        "{}, {d:02} {} {y} {:02}:{:02}:{:02} +0000",
        DAYS[day.rem_euclid(7) as usize],
        MONTHS[(m.clamp(1, 12) - 1) as usize],
        in_day / 3_600,
        in_day % 3_600 / 60,
        in_day % 60
    )
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_dot_stuffed_with_crlf_and_dated() {
        let m = message("a@x", &["b@y".into()], "hi\nthere", "line\n.dot\nend");
        assert!(m.contains("Subject: hi there\r\n"));
        assert!(m.ends_with("line\r\n..dot\r\nend\r\n.\r\n"), "{m}");
        assert_eq!(
            rfc5322_date(Ts::parse("2026-11-30T12:34:56Z").expect("time")),
            "Mon, 30 Nov 2026 12:34:56 +0000"
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (raw, enc) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(raw.as_bytes()), enc);
        }
    }
}
