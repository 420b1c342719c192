//! Alerts end to end on the replayed Binance recording, delivered to real
//! receivers on loopback: an HTTP server that checks the HMAC signature of
//! every webhook (and fails the first one, so the retry shows), and a real
//! SMTP server (Python's aiosmtpd). Checks the messages' contents, the
//! retry, and that the cooldown holds a wobbling price to one firing.
//!
//! aiosmtpd must be importable by `target/ci-venv/bin/python` (`.ci/run`
//! installs it), by `$CK_TEST_PYTHON`, or by `python3`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ck_alerts::{AlertHandle, ChannelConfig, Notifier, Rule, Target};
use ck_model::Decimal;
use tokio_util::sync::CancellationToken;

use crate::support::{btc, everything, settings};

const SECRET: &str = "webhook-secret";

/// A Python that can run aiosmtpd, or a loud failure saying how to get one.
fn python() -> PathBuf {
    let venv = ck_testkit::project_root().join("target/ci-venv/bin/python");
    let candidates: Vec<PathBuf> = std::env::var_os("CK_TEST_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([venv, PathBuf::from("python3")])
        .collect();
    for p in &candidates {
        let ok = Command::new(p)
            .args(["-c", "import aiosmtpd"])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if ok {
            return p.clone();
        }
    }
    panic!(
        "the alert test needs a real SMTP server: `pip install aiosmtpd` (into target/ci-venv, as .ci/run does, or set CK_TEST_PYTHON); tried {candidates:?}"
    );
}

/// aiosmtpd on a free loopback port, printing each message it gets.
struct SmtpServer {
    child: Child,
    addr: String,
    out: Arc<Mutex<String>>,
}

impl SmtpServer {
    fn start() -> SmtpServer {
        SmtpServer::start_with(&[])
    }

    /// With extra aiosmtpd arguments (`--tlscert`, `--tlskey`).
    fn start_with(extra: &[&str]) -> SmtpServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        let mut child = Command::new(python())
            .args(["-u", "-m", "aiosmtpd", "-n", "-l", &addr])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start aiosmtpd");
        let out = Arc::new(Mutex::new(String::new()));
        let mut stdout = child.stdout.take().expect("stdout");
        let sink = out.clone();
        std::thread::spawn(move || {
            use std::io::Read as _;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
        let server = SmtpServer { child, addr, out };
        for _ in 0..100 {
            if std::net::TcpStream::connect(&server.addr).is_ok() {
                return server;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("aiosmtpd did not start on {}", server.addr);
    }

    fn received(&self) -> String {
        self.out.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What it printed once a whole message arrived (or after five seconds).
    async fn message(&self) -> String {
        let mut mail = String::new();
        for _ in 0..100 {
            mail = self.received();
            if mail.contains("END MESSAGE") {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        mail
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the webhook receiver saw: each body, and whether its signature held;
/// and the chat bodies, by path.
#[derive(Default)]
struct Hooks {
    calls: Vec<(String, bool)>,
    chats: Vec<(String, serde_json::Value)>,
}

async fn webhook_receiver(hooks: Arc<Mutex<Hooks>>) -> String {
    use axum::http::{HeaderMap, StatusCode};
    let chats = hooks.clone();
    let app = axum::Router::new()
        .route(
            "/chat/{kind}",
            axum::routing::post(
                move |axum::extract::Path(kind): axum::extract::Path<String>,
                      axum::Json(body): axum::Json<serde_json::Value>| {
                    let chats = chats.clone();
                    async move {
                        chats.lock().expect("lock").chats.push((kind, body));
                        StatusCode::OK
                    }
                },
            ),
        )
        .route(
            "/hook",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let hooks = hooks.clone();
                async move {
                    let given = headers
                        .get(ck_alerts::notify::SIGNATURE_HEADER)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("");
                    let valid = given == ck_alerts::notify::signature(SECRET.as_bytes(), &body);
                    let mut h = hooks.lock().expect("lock");
                    h.calls
                        .push((String::from_utf8_lossy(&body).into_owned(), valid));
                    // The first delivery fails: the notifier must retry.
                    if h.calls.len() == 1 {
                        StatusCode::INTERNAL_SERVER_ERROR
                    } else if valid {
                        StatusCode::OK
                    } else {
                        StatusCode::UNAUTHORIZED
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rule_fires_once_under_its_cooldown_and_reaches_a_webhook_and_an_inbox() {
    let smtp = SmtpServer::start();
    let hooks = Arc::new(Mutex::new(Hooks::default()));
    let receiver = webhook_receiver(hooks.clone()).await;

    let dir = tempfile::tempdir().expect("dir");
    let s = settings(dir.path());
    let store = ck_app::open_store(&s).await.expect("store");
    // The recording trades around 61,600–61,860; it crosses below 61,700
    // many times in its last minutes. One firing an hour, whatever it does.
    let rule = Rule::from_json(
        r#"{"kind":"price_below","exchange":"binance","instrument":"BTC-USDT","level":"61700",
            "cooldown_secs":3600,"hysteresis":"0","notify":["hook","mail","slack","discord","telegram"]}"#,
    )
    .expect("rule");
    let channels = vec![
        ChannelConfig {
            name: "hook".into(),
            target: Target::Webhook {
                url: format!("{receiver}/hook"),
                secret: Some(SECRET.into()),
            },
        },
        ChannelConfig {
            name: "slack".into(),
            target: Target::Slack {
                url: format!("{receiver}/chat/slack"),
            },
        },
        ChannelConfig {
            name: "discord".into(),
            target: Target::Discord {
                url: format!("{receiver}/chat/discord"),
            },
        },
        ChannelConfig {
            name: "telegram".into(),
            target: Target::Telegram {
                url: format!("{receiver}/chat/telegram"),
                chat_id: "-100042".into(),
            },
        },
        ChannelConfig {
            name: "mail".into(),
            target: Target::Email {
                smtp: smtp.addr.clone(),
                from: "candlekeep@example.org".into(),
                to: vec!["trader@example.org".into()],
                username: None,
                password: None,
                ca_file: None,
            },
        },
    ];
    let names = ["hook", "mail", "slack", "discord", "telegram"];
    let handle = AlertHandle::new(vec![rule], names.iter().map(|n| (*n).to_owned()).collect());
    let notifier = Notifier::new(channels, 4, Duration::from_millis(50)).expect("notifier");
    let stop = CancellationToken::new();
    let runtime = ck_app::runtime::Runtime::new();
    let service = tokio::spawn(ck_alerts::service::run(
        runtime.feed.clone(),
        store.clone(),
        handle,
        Arc::new(notifier),
        stop.clone(),
    ));
    // Let the service subscribe before the replay starts.
    tokio::time::sleep(Duration::from_millis(200)).await;
    crate::support::replay_binance_fixture_with(&s, &runtime, &store).await;

    // The firing, and its deliveries once they are known.
    let mut firings = Vec::new();
    for _ in 0..200 {
        firings = store.firings(10).await.expect("firings");
        if firings.iter().all(|f| f.deliveries.is_some()) && !firings.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    stop.cancel();
    service.await.expect("service");

    // Exactly one firing, at the first trade under the level.
    let trades = store.trades(&everything(btc())).await.expect("trades");
    let level = Decimal::parse("61700").expect("level");
    let crossings = trades
        .windows(2)
        .filter(|w| w[0].price >= level && w[1].price < level)
        .count();
    assert!(
        crossings > 1,
        "the price wobbles across the level: {crossings} crossings"
    );
    let first_below = trades
        .iter()
        .find(|t| t.price < level)
        .expect("a trade below");
    assert_eq!(
        firings.len(),
        1,
        "the cooldown holds it to one: {firings:?}"
    );
    let f: serde_json::Value = serde_json::from_str(&firings[0].firing).expect("json");
    assert_eq!(firings[0].fired_at, first_below.ts_exchange);
    assert_eq!(f["value"].as_f64(), Some(first_below.price.to_f64()));
    assert_eq!(f["kind"], "price_below");
    let message = f["message"].as_str().expect("message").to_owned();
    assert!(
        message.contains("binance BTC-USDT") && message.contains("below 61700"),
        "{message}"
    );

    // Deliveries: the webhook after one retry, the email at once.
    let deliveries: serde_json::Value =
        serde_json::from_str(firings[0].deliveries.as_deref().expect("deliveries")).expect("json");
    let by = |name: &str| {
        deliveries
            .as_array()
            .and_then(|a| a.iter().find(|d| d["channel"] == name))
            .cloned()
            .unwrap_or_default()
    };
    assert_eq!(
        (by("hook")["ok"].as_bool(), by("hook")["attempts"].as_u64()),
        (Some(true), Some(2)),
        "{deliveries}"
    );
    assert_eq!(
        (by("mail")["ok"].as_bool(), by("mail")["attempts"].as_u64()),
        (Some(true), Some(1)),
        "{deliveries}"
    );

    // The receiver saw two signed POSTs carrying the firing.
    let calls = std::mem::take(&mut hooks.lock().expect("lock").calls);
    assert_eq!(calls.len(), 2);
    for (body, valid) in &calls {
        assert!(valid, "the HMAC-SHA256 signature checks out");
        let posted: serde_json::Value = serde_json::from_str(body).expect("json body");
        assert_eq!(posted["rule_id"], "config:1");
        assert_eq!(posted["message"].as_str(), Some(message.as_str()));
    }

    // The chat webhooks got their own payload formats.
    let mut chats = std::mem::take(&mut hooks.lock().expect("lock").chats);
    chats.sort_by(|a, b| a.0.cmp(&b.0));
    let text = format!("candlekeep alert: binance BTC-USDT below 61700: {message}");
    assert_eq!(
        chats,
        [
            ("discord".to_owned(), serde_json::json!({ "content": text })),
            ("slack".to_owned(), serde_json::json!({ "text": text })),
            (
                "telegram".to_owned(),
                serde_json::json!({ "chat_id": "-100042", "text": text })
            ),
        ]
    );
    for name in ["slack", "discord", "telegram"] {
        assert_eq!(by(name)["ok"].as_bool(), Some(true), "{name}");
    }

    // The inbox got the message with its subject and text.
    let mail = smtp.message().await;
    assert!(
        mail.contains("Subject: candlekeep alert: binance BTC-USDT below 61700"),
        "{mail}"
    );
    assert!(mail.contains("To: <trader@example.org>"), "{mail}");
    assert!(mail.contains(&message), "{mail}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_goes_over_starttls_when_the_server_offers_it() {
    // A certificate for localhost, and a server that offers STARTTLS and
    // refuses mail until it is used.
    let dir = tempfile::tempdir().expect("dir");
    let path = |name: &str| dir.path().join(name);
    let (ca, cert, key) = (path("ca.pem"), path("cert.pem"), path("key.pem"));
    std::fs::write(
        path("leaf.ext"),
        "subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .expect("ext");
    let openssl = |args: &[&str]| {
        let ok = Command::new("openssl")
            .current_dir(dir.path())
            .args(args)
            .stderr(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .expect("openssl (apt-get install -y openssl)")
            .success();
        assert!(ok, "openssl {args:?}");
    };
    // A private CA, and a certificate it signs for localhost.
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=candlekeep test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "key.pem",
        "-out",
        "leaf.csr",
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        "leaf.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "leaf.ext",
        "-out",
        "cert.pem",
    ]);
    let smtp = SmtpServer::start_with(&[
        "--tlscert",
        cert.to_str().expect("utf8"),
        "--tlskey",
        key.to_str().expect("utf8"),
    ]);
    let port = smtp
        .addr
        .rsplit_once(':')
        .map(|(_, p)| p.to_owned())
        .expect("port");
    let channel = |name: &str, ca_file: Option<String>| ChannelConfig {
        name: name.into(),
        target: Target::Email {
            smtp: format!("localhost:{port}"),
            from: "candlekeep@example.org".into(),
            to: vec!["trader@example.org".into()],
            username: None,
            password: None,
            ca_file,
        },
    };
    let notifier = Notifier::new(
        vec![
            channel("trusted", Some(ca.display().to_string())),
            channel("untrusted", None),
        ],
        1,
        Duration::from_millis(10),
    )
    .expect("notifier");
    let firing = ck_alerts::Firing {
        rule_id: "7".into(),
        rule: "starttls check".into(),
        kind: "price_above".into(),
        exchange: None,
        instrument: None,
        value: 1.5,
        threshold: 1.0,
        message: "sent over TLS".into(),
        time: ck_model::Ts::from_secs(1_700_000_000),
    };
    let results = notifier
        .deliver(&firing, &["trusted".into(), "untrusted".into()])
        .await;
    assert!(results[0].ok, "{results:?}");
    // Without the server's CA the certificate is refused: TLS is verified.
    assert!(!results[1].ok);
    let why = results[1].error.clone().unwrap_or_default();
    assert!(why.contains("STARTTLS handshake"), "{why}");
    let mail = smtp.message().await;
    assert!(
        mail.contains("Subject: candlekeep alert: starttls check"),
        "{mail}"
    );
    assert!(mail.contains("sent over TLS"), "{mail}");
}
