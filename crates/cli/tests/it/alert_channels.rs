//! SMS, phone calls and push: an alert on the replayed Binance recording
//! delivered through Twilio (Messages and Calls), ntfy and Pushover, each to
//! a real HTTP receiver on loopback that checks the request each provider
//! documents (method, path, form or body, auth) and answers as the provider
//! does, a Twilio error included, which is stored with the firing.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, Method, StatusCode, Uri};
use ck_alerts::{AlertHandle, ChannelConfig, Notifier, Rule, Target, Twilio};
use tokio_util::sync::CancellationToken;

use crate::support::settings;

/// One request the receiver took.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    authorization: String,
    title: String,
    content_type: String,
    body: String,
}

/// The form fields of a urlencoded body, in order.
fn form(body: &str) -> Vec<(String, String)> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                let bytes = s.as_bytes();
                let mut out = Vec::new();
                let mut i = 0;
                while i < bytes.len() {
                    if bytes[i] == b'%' && i + 2 < bytes.len() {
                        let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                        out.push(u8::from_str_radix(hex, 16).expect("hex byte"));
                        i += 3;
                    } else {
                        out.push(bytes[i]);
                        i += 1;
                    }
                }
                String::from_utf8(out).expect("utf-8")
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// `Basic base64(user:password)`.
fn basic(user: &str, password: &str) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let input = format!("{user}:{password}");
    let mut out = String::new();
    for chunk in input.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    format!("Basic {out}")
}

/// A receiver for every provider's API: it records each request and
/// answers as the provider does (Twilio's 201 with the resource, or its
/// 400 error JSON for account `ACbad`; ntfy's 200; Pushover's status 1).
async fn provider_receiver(seen: Arc<Mutex<Vec<Seen>>>) -> String {
    let app = axum::Router::new().fallback(
        move |method: Method, uri: Uri, headers: HeaderMap, body: String| {
            let seen = seen.clone();
            async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let path = uri.path().to_owned();
                let body_copy = body.clone();
                seen.lock().expect("lock").push(Seen {
                    method,
                    path: path.clone(),
                    authorization: header("authorization"),
                    title: header("title"),
                    content_type: header("content-type"),
                    body,
                });
                // ACflaky: the first text to its second number fails once.
                if path.starts_with("/2010-04-01/Accounts/ACflaky/") {
                    let second = form(&body_copy).iter().any(|(k, v)| k == "To" && v == "+15557654321");
                    let tries = seen
                        .lock()
                        .expect("lock")
                        .iter()
                        .filter(|s| s.path == path && form(&s.body).iter().any(|(k, v)| k == "To" && v == "+15557654321"))
                        .count();
                    if second && tries == 1 {
                        return (StatusCode::INTERNAL_SERVER_ERROR, r#"{"code": 20500, "message": "Internal Server Error"}"#);
                    }
                }
                if path.starts_with("/2010-04-01/Accounts/ACbad/") {
                    return (
                        StatusCode::BAD_REQUEST,
                        r#"{"code": 21211, "message": "The 'To' number +1555 is not a valid phone number.", "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#,
                    );
                }
                if path.starts_with("/2010-04-01/") {
                    return (StatusCode::CREATED, r#"{"sid": "SM0001", "status": "queued"}"#);
                }
                if path == "/1/messages.json" {
                    return (StatusCode::OK, r#"{"status":1,"request":"647d2300-702c-4b38-8b2f-d56326ae460b"}"#);
                }
                (StatusCode::OK, r#"{"id":"sPs71M8A2T"}"#)
            }
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_calls_and_push_reach_each_provider_as_it_documents() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let receiver = provider_receiver(seen.clone()).await;
    let dir = tempfile::tempdir().expect("dir");
    let s = settings(dir.path());
    let store = ck_app::open_store(&s).await.expect("store");
    let rule = Rule::from_json(
        r#"{"kind":"price_below","exchange":"binance","instrument":"BTC-USDT","level":"61700",
            "cooldown_secs":3600,"hysteresis":"0","notify":["sms","call","ntfy","pushover","sms-bad","sms-flaky"]}"#,
    )
    .expect("rule");
    let twilio = |name: &str, sid: &str, voice: bool| {
        let account = Twilio {
            account_sid: sid.to_owned(),
            auth_token: Some("twilio-token".to_owned()),
            from: "+15005550006".to_owned(),
            to: vec!["+15551234567".to_owned(), "+15557654321".to_owned()],
            base_url: receiver.clone(),
        };
        ChannelConfig {
            name: name.into(),
            target: if voice {
                Target::Voice(account)
            } else {
                Target::Sms(account)
            },
        }
    };
    let channels = vec![
        twilio("sms", "ACtest", false),
        twilio("call", "ACtest", true),
        twilio("sms-bad", "ACbad", false),
        twilio("sms-flaky", "ACflaky", false),
        ChannelConfig {
            name: "ntfy".into(),
            target: Target::Ntfy {
                url: format!("{receiver}/candlekeep-alerts"),
                token: Some("tk_ntfy".into()),
            },
        },
        ChannelConfig {
            name: "pushover".into(),
            target: Target::Pushover {
                token: Some("azGDORePK8gMaC0QOYAMyEEuzJnyUi".into()),
                user: "uQiRzpo4DXghDmr9QzzfQu27cmVRsG".into(),
                base_url: receiver.clone(),
            },
        },
    ];
    for c in &channels {
        let printed = serde_json::to_string(c).expect("json");
        for secret in ["twilio-token", "tk_ntfy", "azGDORePK8gMaC0QOYAMyEEuzJnyUi"] {
            assert!(
                !printed.contains(secret),
                "secrets are never printed: {printed}"
            );
        }
    }
    let names: Vec<String> = channels.iter().map(|c| c.name.clone()).collect();
    let handle = AlertHandle::new(vec![rule], names);
    let notifier = Notifier::new(channels, 2, Duration::from_millis(20)).expect("notifier");
    let runtime = ck_app::runtime::Runtime::new();
    let stop = CancellationToken::new();
    let service = tokio::spawn(ck_alerts::service::run(
        runtime.feed.clone(),
        store.clone(),
        handle,
        Arc::new(notifier),
        stop.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(200)).await;
    crate::support::replay_binance_fixture_with(&s, &runtime, &store).await;
    let mut firings = Vec::new();
    for _ in 0..200 {
        firings = store.firings(10).await.expect("firings");
        if !firings.is_empty() && firings.iter().all(|f| f.deliveries.is_some()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    service.await.expect("service");
    assert_eq!(firings.len(), 1, "{firings:?}");
    let f: serde_json::Value = serde_json::from_str(&firings[0].firing).expect("json");
    let message = f["message"].as_str().expect("message").to_owned();
    let text = format!("candlekeep alert: binance BTC-USDT below 61700: {message}");

    // The deliveries, stored with the firing: Twilio's error by its code
    // and message, after the retries.
    let deliveries: serde_json::Value =
        serde_json::from_str(firings[0].deliveries.as_deref().expect("deliveries")).expect("json");
    let by = |name: &str| {
        deliveries
            .as_array()
            .and_then(|a| a.iter().find(|d| d["channel"] == name))
            .cloned()
            .unwrap_or_default()
    };
    for name in ["sms", "call", "ntfy", "pushover"] {
        assert_eq!(by(name)["ok"].as_bool(), Some(true), "{name}: {deliveries}");
    }
    let flaky = by("sms-flaky");
    assert_eq!(
        (flaky["ok"].as_bool(), flaky["attempts"].as_u64()),
        (Some(true), Some(2)),
        "{deliveries}"
    );
    let bad = by("sms-bad");
    assert_eq!(
        (bad["ok"].as_bool(), bad["attempts"].as_u64()),
        (Some(false), Some(2)),
        "{deliveries}"
    );
    assert_eq!(
        bad["error"].as_str(),
        Some(
            "HTTP 400 Bad Request: Twilio 21211: The 'To' number +1555 is not a valid phone number."
        ),
        "{deliveries}"
    );
    assert!(!deliveries.to_string().contains("twilio-token"));

    let seen = seen.lock().expect("lock").clone();
    let to = |s: &Seen| {
        form(&s.body)
            .into_iter()
            .find(|(k, _)| k == "To")
            .map(|(_, v)| v)
            .unwrap_or_default()
    };
    // Twilio Messages: one POST per number, basic auth, the form fields.
    let sms: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path == "/2010-04-01/Accounts/ACtest/Messages.json")
        .collect();
    assert_eq!(sms.len(), 2, "{seen:?}");
    for (s, number) in sms.iter().zip(["+15551234567", "+15557654321"]) {
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.authorization, basic("ACtest", "twilio-token"));
        assert_eq!(s.content_type, "application/x-www-form-urlencoded");
        assert_eq!(
            form(&s.body),
            [
                ("To".to_owned(), number.to_owned()),
                ("From".to_owned(), "+15005550006".to_owned()),
                ("Body".to_owned(), text.clone()),
            ]
        );
    }
    // Twilio Calls: the call says the alert, in TwiML.
    let calls: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path == "/2010-04-01/Accounts/ACtest/Calls.json")
        .collect();
    assert_eq!(calls.len(), 2, "{seen:?}");
    for s in &calls {
        assert_eq!(s.method, Method::POST);
        assert_eq!(s.authorization, basic("ACtest", "twilio-token"));
        let fields = form(&s.body);
        let twiml = fields
            .iter()
            .find(|(k, _)| k == "Twiml")
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        assert_eq!(twiml, format!("<Response><Say>{text}</Say></Response>"));
        assert_eq!(fields[1], ("From".to_owned(), "+15005550006".to_owned()));
    }
    assert_eq!(
        calls.iter().map(|s| to(s)).collect::<Vec<_>>(),
        ["+15551234567", "+15557654321"]
    );
    // The failing account was tried twice for its first number, then given up.
    let bad: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path.starts_with("/2010-04-01/Accounts/ACbad/"))
        .collect();
    assert_eq!(bad.len(), 2, "{seen:?}");
    // A retry texts only the number it had not reached.
    let flaky: Vec<String> = seen
        .iter()
        .filter(|s| s.path.starts_with("/2010-04-01/Accounts/ACflaky/"))
        .map(to)
        .collect();
    assert_eq!(flaky, ["+15551234567", "+15557654321", "+15557654321"]);
    // ntfy: the message as the body, the title in a header, the bearer token.
    let ntfy: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path == "/candlekeep-alerts")
        .collect();
    assert_eq!(ntfy.len(), 1, "{seen:?}");
    assert_eq!(ntfy[0].method, Method::POST);
    assert_eq!(ntfy[0].authorization, "Bearer tk_ntfy");
    assert_eq!(
        ntfy[0].title,
        "candlekeep alert: binance BTC-USDT below 61700"
    );
    assert_eq!(ntfy[0].body, message);
    // Pushover: its form fields, the token among them.
    let push: Vec<&Seen> = seen
        .iter()
        .filter(|s| s.path == "/1/messages.json")
        .collect();
    assert_eq!(push.len(), 1, "{seen:?}");
    assert_eq!(push[0].content_type, "application/x-www-form-urlencoded");
    assert_eq!(
        form(&push[0].body),
        [
            (
                "token".to_owned(),
                "azGDORePK8gMaC0QOYAMyEEuzJnyUi".to_owned()
            ),
            (
                "user".to_owned(),
                "uQiRzpo4DXghDmr9QzzfQu27cmVRsG".to_owned()
            ),
            (
                "title".to_owned(),
                "candlekeep alert: binance BTC-USDT below 61700".to_owned()
            ),
            ("message".to_owned(), message.clone()),
        ]
    );
}
