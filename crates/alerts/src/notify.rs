//! Notification channels and delivery: a webhook (JSON POST signed with
//! HMAC-SHA256), Slack, Discord and Telegram bot webhooks, email over SMTP
//! (STARTTLS when the server offers it), SMS and phone calls through
//! Twilio, push through ntfy and Pushover, and the log. Each attempt that
//! fails is retried with exponential backoff; every result is returned, to
//! be recorded with the firing.

use std::collections::HashMap;
use std::time::Duration;

use ck_model::Ts;
use hmac::Mac;
use serde::{Deserialize, Serialize};

use crate::engine::Firing;

/// The header carrying the webhook signature: `sha256=<hex HMAC of the body>`.
pub const SIGNATURE_HEADER: &str = "x-candlekeep-signature";

/// A named channel.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChannelConfig {
    /// The name rules use in `notify`.
    pub name: String,
    /// Where it goes.
    #[serde(flatten)]
    pub target: Target,
}

impl ChannelConfig {
    /// The channel with its credentials masked, for printing: webhook,
    /// Slack, Discord and Telegram URLs keep only their host.
    #[must_use]
    pub fn redacted(&self) -> ChannelConfig {
        use ck_bus::secrets::redact_webhook;
        let target = match &self.target {
            Target::Webhook { url, secret } => Target::Webhook {
                url: redact_webhook(url),
                secret: secret.clone(),
            },
            Target::Slack { url } => Target::Slack {
                url: redact_webhook(url),
            },
            Target::Discord { url } => Target::Discord {
                url: redact_webhook(url),
            },
            Target::Telegram { url, chat_id } => Target::Telegram {
                url: redact_webhook(url),
                chat_id: chat_id.clone(),
            },
            other => other.clone(),
        };
        ChannelConfig {
            name: self.name.clone(),
            target,
        }
    }

    /// The channel's secrets (URL paths and queries, keys, passwords), for
    /// scrubbing text.
    #[must_use]
    pub fn secrets(&self) -> Vec<String> {
        use ck_bus::secrets::url_secrets;
        match &self.target {
            Target::Webhook { url, secret } => {
                let mut s = url_secrets(url);
                s.extend(secret.clone());
                s
            }
            Target::Slack { url } | Target::Discord { url } | Target::Telegram { url, .. } => {
                url_secrets(url)
            }
            Target::Email { password, .. } => password.iter().cloned().collect(),
            Target::Sms(t) | Target::Voice(t) => t.auth_token.iter().cloned().collect(),
            Target::Ntfy { url, token } => {
                let mut s = url_secrets(url);
                s.extend(token.clone());
                s
            }
            Target::Pushover { token, .. } => token.iter().cloned().collect(),
            Target::Log => Vec::new(),
        }
    }
}

/// Where a channel delivers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Target {
    /// A JSON POST of the firing; signed when `secret` is set.
    Webhook {
        /// The URL.
        url: String,
        /// The HMAC-SHA256 key (never printed).
        #[serde(default, skip_serializing)]
        secret: Option<String>,
    },
    /// A Slack incoming webhook (`{"text": ...}`).
    Slack {
        /// The webhook URL.
        url: String,
    },
    /// A Discord webhook (`{"content": ...}`).
    Discord {
        /// The webhook URL.
        url: String,
    },
    /// A Telegram bot (`sendMessage` with `chat_id` and `text`).
    Telegram {
        /// `https://api.telegram.org/bot<token>/sendMessage`.
        url: String,
        /// The chat.
        chat_id: String,
    },
    /// Email over SMTP (STARTTLS when the server offers it).
    Email {
        /// `host:port` of the SMTP server.
        smtp: String,
        /// The sender address.
        from: String,
        /// The recipients.
        to: Vec<String>,
        /// The login, if the server wants one (sent only over TLS).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        username: Option<String>,
        /// The password (never printed).
        #[serde(default, skip_serializing)]
        password: Option<String>,
        /// A PEM file of certificates to trust besides the web PKI roots
        /// (a private mail server's own CA).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ca_file: Option<String>,
    },
    /// SMS through Twilio's Messages API, one message per number.
    Sms(Twilio),
    /// A phone call through Twilio's Calls API that says the alert, one
    /// call per number.
    Voice(Twilio),
    /// A push notification through ntfy (self-hostable): the message POSTed
    /// to the topic URL.
    Ntfy {
        /// The topic URL, `https://ntfy.sh/<topic>`.
        url: String,
        /// An access token, sent as a bearer token (never printed).
        #[serde(default, skip_serializing)]
        token: Option<String>,
    },
    /// A push notification through Pushover's Messages API.
    Pushover {
        /// The application's API token (never printed).
        #[serde(default, skip_serializing)]
        token: Option<String>,
        /// The user or group key.
        user: String,
        /// Pushover's API root.
        #[serde(default = "pushover_api")]
        base_url: String,
    },
    /// The log (every firing is logged anyway; this names it as a channel).
    Log,
}

/// A Twilio account and the numbers an `sms` or `voice` channel reaches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Twilio {
    /// The Twilio account (`AC…`).
    pub account_sid: String,
    /// Its auth token (never printed).
    #[serde(default, skip_serializing)]
    pub auth_token: Option<String>,
    /// The sending or calling number (E.164, `+15005550006`).
    pub from: String,
    /// The numbers to reach.
    pub to: Vec<String>,
    /// Twilio's API root (a receiver on loopback in tests).
    #[serde(default = "twilio_api")]
    pub base_url: String,
}

fn twilio_api() -> String {
    "https://api.twilio.com".to_owned()
}

fn pushover_api() -> String {
    "https://api.pushover.net".to_owned()
}

/// One channel's result for one firing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The channel.
    pub channel: String,
    /// Whether it was delivered.
    pub ok: bool,
    /// Attempts made.
    pub attempts: u32,
    /// The last error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it finished.
    pub at: Ts,
}

/// Delivers firings to channels.
#[derive(Debug, Clone)]
pub struct Notifier {
    client: reqwest::Client,
    channels: HashMap<String, ChannelConfig>,
    attempts: u32,
    backoff: Duration,
}

impl Notifier {
    /// A notifier for `channels`, trying each delivery up to `attempts`
    /// times, waiting `backoff` and then twice as long each time.
    ///
    /// # Errors
    /// A channel name used twice, or a TLS setup failure.
    pub fn new(
        channels: Vec<ChannelConfig>,
        attempts: u32,
        backoff: Duration,
    ) -> Result<Notifier, String> {
        let mut by_name = HashMap::new();
        for c in channels {
            if let Some(old) = by_name.insert(c.name.clone(), c) {
                return Err(format!("alert channel `{}` is defined twice", old.name));
            }
        }
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        Ok(Notifier {
            client,
            channels: by_name,
            attempts: attempts.max(1),
            backoff,
        })
    }

    /// Whether a channel of this name exists.
    #[must_use]
    pub fn has(&self, name: &str) -> bool {
        self.channels.contains_key(name)
    }

    /// Delivers `firing` to each named channel (in parallel), retrying
    /// failures; one result per channel.
    pub async fn deliver(&self, firing: &Firing, channels: &[String]) -> Vec<Delivery> {
        tracing::warn!(rule = %firing.rule, rule_id = %firing.rule_id, value = firing.value, "alert: {}", firing.message);
        let tasks = channels.iter().map(|name| self.deliver_one(firing, name));
        futures_util::future::join_all(tasks).await
    }

    async fn deliver_one(&self, firing: &Firing, name: &str) -> Delivery {
        let Some(channel) = self.channels.get(name) else {
            return Delivery {
                channel: name.to_owned(),
                ok: false,
                attempts: 0,
                error: Some(format!("no channel named `{name}`")),
                at: Ts::now(),
            };
        };
        let mut wait = self.backoff;
        let mut last_error = None;
        // Numbers a multi-number channel has reached: a retry skips them.
        let mut reached = std::collections::HashSet::new();
        for attempt in 1..=self.attempts {
            match self.send(&channel.target, firing, &mut reached).await {
                Ok(()) => {
                    ck_bus::metrics::counter("candlekeep_alerts_delivered_total").inc();
                    return Delivery {
                        channel: name.to_owned(),
                        ok: true,
                        attempts: attempt,
                        error: None,
                        at: Ts::now(),
                    };
                }
                Err(e) => {
                    // Whatever quotes the URL or a password loses it here,
                    // before it is logged, stored or served.
                    let e = ck_bus::secrets::scrub(&e, &channel.secrets());
                    ck_bus::metrics::counter("candlekeep_alerts_delivery_failures_total").inc();
                    tracing::warn!(channel = name, attempt, error = %e, "alert delivery failed");
                    last_error = Some(e);
                    if attempt < self.attempts {
                        tokio::time::sleep(wait).await;
                        wait = wait.saturating_mul(2);
                    }
                }
            }
        }
        Delivery {
            channel: name.to_owned(),
            ok: false,
            attempts: self.attempts,
            error: last_error,
            at: Ts::now(),
        }
    }

    async fn send(
        &self,
        target: &Target,
        firing: &Firing,
        reached: &mut std::collections::HashSet<String>,
    ) -> Result<(), String> {
        let text = format!("candlekeep alert: {}: {}", firing.rule, firing.message);
        match target {
            Target::Webhook { url, secret } => {
                let body = serde_json::to_vec(firing).map_err(|e| e.to_string())?;
                let mut request = self
                    .client
                    .post(url)
                    .header(reqwest::header::CONTENT_TYPE, "application/json");
                if let Some(secret) = secret {
                    request = request.header(SIGNATURE_HEADER, signature(secret.as_bytes(), &body));
                }
                check(request.body(body).send().await).await
            }
            Target::Slack { url } => {
                self.post_json(url, &serde_json::json!({ "text": text }))
                    .await
            }
            Target::Discord { url } => {
                self.post_json(url, &serde_json::json!({ "content": text }))
                    .await
            }
            Target::Telegram { url, chat_id } => {
                self.post_json(
                    url,
                    &serde_json::json!({ "chat_id": chat_id, "text": text }),
                )
                .await
            }
            Target::Email {
                smtp,
                from,
                to,
                username,
                password,
                ca_file,
            } => {
                let login = username.as_ref().map(|u| crate::smtp::Credentials {
                    username: u.clone(),
                    password: password.clone().unwrap_or_default(),
                });
                crate::smtp::send(
                    smtp,
                    from,
                    to,
                    &format!("candlekeep alert: {}", firing.rule),
                    &email_body(firing),
                    login.as_ref(),
                    ca_file.as_deref(),
                )
                .await
            }
            Target::Sms(twilio) | Target::Voice(twilio) => {
                let Twilio {
                    account_sid,
                    auth_token,
                    from,
                    to,
                    base_url,
                } = twilio;
                let account = TwilioAccount {
                    base_url,
                    sid: account_sid,
                    token: auth_token.as_deref(),
                };
                // A text says the alert; a call speaks it (TwiML <Say>).
                let (resource, field, content) = if matches!(target, Target::Voice { .. }) {
                    let twiml = format!("<Response><Say>{}</Say></Response>", xml_text(&text));
                    ("Calls", "Twiml", twiml)
                } else {
                    ("Messages", "Body", text.clone())
                };
                for number in to {
                    if reached.contains(number) {
                        continue;
                    }
                    self.twilio(
                        &account,
                        resource,
                        &[("To", number), ("From", from), (field, &content)],
                    )
                    .await?;
                    reached.insert(number.clone());
                }
                Ok(())
            }
            Target::Ntfy { url, token } => {
                let mut request = self
                    .client
                    .post(url)
                    .header("Title", format!("candlekeep alert: {}", firing.rule))
                    .header("Tags", "chart_with_upwards_trend")
                    .body(firing.message.clone());
                if let Some(token) = token {
                    request = request.bearer_auth(token);
                }
                check(request.send().await).await
            }
            Target::Pushover {
                token,
                user,
                base_url,
            } => {
                let token = token
                    .as_deref()
                    .ok_or_else(|| "pushover: no application token configured".to_owned())?;
                let url = format!("{}/1/messages.json", base_url.trim_end_matches('/'));
                let title = format!("candlekeep alert: {}", firing.rule);
                let form = [
                    ("token", token),
                    ("user", user.as_str()),
                    ("title", title.as_str()),
                    ("message", firing.message.as_str()),
                ];
                check(self.client.post(url).form(&form).send().await).await
            }
            Target::Log => {
                tracing::warn!(target: "candlekeep::alerts", rule = %firing.rule, "{}", firing.message);
                Ok(())
            }
        }
    }

    /// One request to Twilio's `resource` (`Messages`, `Calls`) of the
    /// account, as a form with basic auth; Twilio's error JSON becomes the
    /// error (`Twilio 21211: The 'To' number … is not a valid phone number`).
    async fn twilio(
        &self,
        account: &TwilioAccount<'_>,
        resource: &str,
        form: &[(&str, &str)],
    ) -> Result<(), String> {
        let token = account
            .token
            .ok_or_else(|| "twilio: no auth token configured".to_owned())?;
        let url = format!(
            "{}/2010-04-01/Accounts/{}/{resource}.json",
            account.base_url.trim_end_matches('/'),
            account.sid
        );
        let response = self
            .client
            .post(url)
            .basic_auth(account.sid, Some(token))
            .form(form)
            .send()
            .await
            .map_err(|e| format!("request failed: {}", ck_bus::error_chain(&e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        let error: Option<(i64, String)> = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| Some((v["code"].as_i64()?, v["message"].as_str()?.to_owned())));
        Err(match error {
            Some((code, message)) => format!("HTTP {status}: Twilio {code}: {message}"),
            None => format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            ),
        })
    }

    async fn post_json(&self, url: &str, body: &serde_json::Value) -> Result<(), String> {
        check(self.client.post(url).json(body).send().await).await
    }
}

/// A Twilio account to send with.
struct TwilioAccount<'a> {
    base_url: &'a str,
    sid: &'a str,
    token: Option<&'a str>,
}

/// `text` safe inside an XML element.
fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A 2xx, or an error naming the status and the start of the body.
async fn check(sent: reqwest::Result<reqwest::Response>) -> Result<(), String> {
    // Without the URL: a webhook's URL is its credential.
    let response =
        sent.map_err(|e| format!("request failed: {}", ck_bus::error_chain(&e.without_url())))?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(format!(
        "HTTP {status}: {}",
        body.chars().take(200).collect::<String>()
    ))
}

/// `sha256=<hex>` of HMAC-SHA256 over `body` with `key`.
#[must_use]
pub fn signature(key: &[u8], body: &[u8]) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return String::new(),
    };
    mac.update(body);
    let bytes = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + bytes.len() * 2);
    out.push_str("sha256=");
    for b in bytes {
        out.push_str(&format!("{b:02x}"));
    }
    out
}

fn email_body(f: &Firing) -> String {
    format!(
        "{}\r\n\r\nRule: {} ({}, id {})\r\nValue: {}\r\nThreshold: {}\r\nTime: {}\r\n",
        f.message, f.rule, f.kind, f.rule_id, f.value, f.threshold, f.time
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_matches_rfc_4231_test_case_2() {
        // RFC 4231, test case 2: key "Jefe".
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// A server on loopback answering every request with a 404 that
    /// quotes the request line (as some APIs echo the path).
    async fn echo_404() -> std::net::SocketAddr {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let mut buf = vec![0u8; 4096];
                let n = socket.read(&mut buf).await.unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]);
                let line = request.lines().next().unwrap_or_default().to_owned();
                let body = format!("no route for {line}");
                let reply = format!(
                    "HTTP/1.1 404 Not Found\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn failed_deliveries_never_carry_the_channel_credentials() {
        let echo = echo_404().await;
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr")
        };
        let channels = vec![
            ChannelConfig {
                name: "telegram".into(),
                target: Target::Telegram {
                    url: format!("http://{closed}/bot123456:TGSECRET-abc/sendMessage"),
                    chat_id: "42".into(),
                },
            },
            ChannelConfig {
                name: "slack".into(),
                target: Target::Slack {
                    url: format!("http://{echo}/services/T000/B000/SLACKSECRET44"),
                },
            },
            ChannelConfig {
                name: "webhook".into(),
                target: Target::Webhook {
                    url: format!("http://{echo}/hook?key=WEBHOOKSECRET6"),
                    secret: Some("HMACSECRET7".into()),
                },
            },
        ];
        let notifier = Notifier::new(channels, 1, Duration::from_millis(1)).expect("notifier");
        let firing = Firing {
            rule_id: "r1".into(),
            rule: "test".into(),
            kind: "price_above".into(),
            exchange: None,
            instrument: None,
            value: 2.0,
            threshold: 1.0,
            message: "above".into(),
            time: Ts(0),
        };
        let names = [
            "telegram".to_owned(),
            "slack".to_owned(),
            "webhook".to_owned(),
        ];
        let deliveries = notifier.deliver(&firing, &names).await;
        assert_eq!(deliveries.len(), 3);
        for d in &deliveries {
            let error = d.error.clone().unwrap_or_default();
            assert!(!d.ok && !error.is_empty(), "{d:?}");
            for secret in ["TGSECRET", "SLACKSECRET44", "WEBHOOKSECRET6", "HMACSECRET7"] {
                assert!(!error.contains(secret), "{}: {error}", d.channel);
            }
        }
        // The echo shows the scrubbed path was really in the answer.
        assert!(
            deliveries[1]
                .error
                .as_deref()
                .unwrap_or_default()
                .contains("HTTP 404"),
            "{deliveries:?}"
        );
    }
}
