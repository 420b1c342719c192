//! SIGTERM during the waits of a start-up: the process exits within a few
//! seconds, cleanly, with what it had committed.

use std::io::BufRead as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use crate::support::{import_binance, stored_binance_trades};

/// A running `candlekeep` whose stderr arrives line by line.
pub(crate) struct Running {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub(crate) fn start(data_dir: &Path, config: Option<&Path>, args: &[&str]) -> Running {
        Running::start_in(None, data_dir, config, args)
    }

    /// As [`Running::start`], in the working directory `cwd`.
    pub(crate) fn start_in(
        cwd: Option<&Path>,
        data_dir: &Path,
        config: Option<&Path>,
        args: &[&str],
    ) -> Running {
        let mut command = Command::new(env!("CARGO_BIN_EXE_candlekeep"));
        if let Some(dir) = cwd {
            command.current_dir(dir);
        }
        if let Some(c) = config {
            command.arg("--config").arg(c);
        }
        if !args.contains(&"--log") {
            command.args(["--log", "info"]);
        }
        let mut child = command
            .arg("--data-dir")
            .arg(data_dir)
            .args(args)
            .env_remove("CANDLEKEEP_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start candlekeep");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr)
                .lines()
                .map_while(Result::ok)
            {
                let _ = tx.send(line);
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits (at most 60 s) for a stderr line containing `needle`.
    pub(crate) fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no line with {needle:?} in:\n{}", self.seen.join("\n"));
    }

    /// SIGTERM, then how long the process took to exit, its status and
    /// everything it printed.
    pub(crate) fn terminate(mut self) -> (Duration, std::process::ExitStatus, String) {
        let sent = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill");
        assert!(sent.success());
        let at = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("wait") {
                break status;
            }
            if at.elapsed() > Duration::from_secs(30) {
                let _ = self.child.kill();
                panic!(
                    "still running 30 s after SIGTERM:\n{}",
                    self.seen.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let took = at.elapsed();
        self.seen.extend(self.lines.try_iter());
        (took, status, self.seen.join("\n"))
    }
}

#[test]
fn sigterm_while_asking_for_the_instrument_list_exits_at_once() {
    let dir = tempfile::tempdir().expect("dir");
    let port = crate::support::free_port();
    let config = dir.path().join("candlekeep.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nkind = \"binance\"\ninstruments = [\"BTC-USDT\"]\n\
             ws_url = \"ws://127.0.0.1:{port}\"\nrest_url = \"http://127.0.0.1:{port}\"\n"
        ),
    )
    .expect("config");
    let mut run = Running::start(
        dir.path(),
        Some(&config),
        &["run", "--listen", "127.0.0.1:0"],
    );
    // In the REST retries of the instrument list: the cause is named.
    let line = run.wait_for("REST request failed; retrying");
    assert!(
        line.to_ascii_lowercase().contains("connection refused"),
        "the failure's cause chain: {line}"
    );
    let (took, status, stderr) = run.terminate();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );
    assert!(
        stderr.contains("stopped while asking for the instrument list"),
        "{stderr}"
    );
}

#[test]
fn sigterm_during_a_backfill_page_exits_at_once_keeping_what_was_committed() {
    let dir = tempfile::tempdir().expect("dir");
    // Something committed before: an import into the same store.
    import_binance(
        dir.path(),
        "ts,trade_id,price,qty,side\n2024-01-01T00:00:00Z,1,42000,1,buy\n",
    );
    let port = crate::support::free_port();
    let rest = format!("http://127.0.0.1:{port}");
    let mut run = Running::start(
        dir.path(),
        None,
        &[
            "backfill",
            "--exchange",
            "binance",
            "--instrument",
            "BTC-USDT",
            "--from",
            "2024-01-01",
            "--to",
            "2024-01-02",
            "--rest-url",
            &rest,
        ],
    );
    run.wait_for("REST request failed; retrying");
    let (took, status, stderr) = run.terminate();
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM"
    );
    assert!(status.success(), "{status}: {stderr}");
    let rows = stored_binance_trades(dir.path());
    assert_eq!(
        rows.as_array().map(Vec::len),
        Some(1),
        "nothing lost: {rows}"
    );
}

/// SIGTERM while a start-up read of the store waits (another session holds
/// the trades table): the process exits at once, saying where it stopped,
/// and what was stored stays.
async fn sigterm_while_a_start_up_read_waits(exchange: &str, after: &str, stopped: &str) {
    use crate::support::{postgres_admin, postgres_url};
    let schema = format!("ckwait{}{exchange}", std::process::id());
    let admin = postgres_admin(&format!(
        "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"
    ))
    .await;
    let store = format!("{}?options=-csearch_path%3D{schema}", postgres_url());
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().to_owned();
    // A trade a minute ago: the candles open now have a trade to warm up from.
    let minute_ago = ck_model::Ts::now().as_millis() - 60_000;
    let csv = data.join("trades.csv");
    std::fs::write(
        &csv,
        format!("ts,trade_id,price,qty,side\n{minute_ago},1,42000,1,buy\n"),
    )
    .expect("csv");
    let cli = |args: &[&str]| crate::support::candlekeep_on(&data, &store, args);
    let out = cli(&[
        "import",
        "--exchange",
        exchange,
        "--instrument",
        "BTC-USDT",
        csv.to_str().expect("utf8"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        crate::support::text(&out.stderr)
    );

    // Another session holds the trades table: every read of it waits.
    let locker = ck_testkit::postgres_client(&postgres_url()).await;
    locker
        .batch_execute(&format!(
            "BEGIN; LOCK TABLE {schema}.trades IN ACCESS EXCLUSIVE MODE"
        ))
        .await
        .expect("lock the trades");
    let port = crate::support::free_port();
    let config = data.join("candlekeep.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\nkind = \"{exchange}\"\ninstruments = [\"BTC-USDT\"]\n\
             ws_url = \"ws://127.0.0.1:{port}\"\nrest_url = \"\"\n"
        ),
    )
    .expect("config");
    let (took, status, stderr) = {
        let (data, store) = (data.clone(), store.clone());
        let after = after.to_owned();
        tokio::task::spawn_blocking(move || {
            let mut run = Running::start(
                &data,
                Some(&config),
                &["--store", &store, "run", "--listen", "127.0.0.1:0"],
            );
            run.wait_for(&after);
            // The read that follows waits on the lock (it cannot be seen
            // from here; half a second is ample for it to have begun).
            std::thread::sleep(Duration::from_millis(500));
            run.terminate()
        })
        .await
        .expect("join")
    };
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        took < Duration::from_secs(5),
        "exited {took:?} after SIGTERM: {stderr}"
    );
    assert!(stderr.contains(stopped), "{stderr}");
    locker.batch_execute("ROLLBACK").await.expect("unlock");
    let out = cli(&["trades", "--exchange", exchange, "--instrument", "BTC-USDT"]);
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", crate::support::text(&out.stderr)));
    assert_eq!(
        rows.as_array().map(Vec::len),
        Some(1),
        "nothing lost: {rows}"
    );
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .await
        .expect("drop the schema");
}

/// Binance's ids run on, so the start reads where gap detection resumes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_reading_where_gap_detection_resumes_exits_at_once() {
    sigterm_while_a_start_up_read_waits(
        "binance",
        "alerts: evaluating",
        "stopped while reading the store at start",
    )
    .await;
}

/// Bybit's ids do not run on: the first read is the warm-up's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_warm_up_reads_exits_at_once() {
    sigterm_while_a_start_up_read_waits(
        "bybit",
        "warming up the candles open now from the store",
        "stopped during warm-up",
    )
    .await;
}
