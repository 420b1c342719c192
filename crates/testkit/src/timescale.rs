//! A TimescaleDB server for tests.
//!
//! Debian's archive has no TimescaleDB, so by default the tests start
//! `tools/timescaledb/server.mjs`: PGlite (PostgreSQL compiled to
//! WebAssembly) with the real TimescaleDB extension, from the npm registry,
//! serving the PostgreSQL wire protocol on a free loopback port. One server
//! per test process; it exits when the process does.
//!
//! `CK_TEST_TIMESCALE_URL` points the tests at a real TimescaleDB server
//! instead.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

/// The server's URL, starting the server on first use.
///
/// # Panics
/// Panics with what to do when Node.js or the server's npm packages are
/// missing, or the server does not come up.
#[must_use]
pub fn timescale_url() -> String {
    if let Ok(url) = std::env::var("CK_TEST_TIMESCALE_URL") {
        return url;
    }
    static SERVER: OnceLock<Server> = OnceLock::new();
    SERVER.get_or_init(Server::start).url.clone()
}

struct Server {
    url: String,
    // Held open: the server exits when this process ends and closes it.
    _stdin: ChildStdin,
    _child: Child,
}

impl Server {
    fn start() -> Server {
        let dir = crate::project_root().join("tools").join("timescaledb");
        assert!(
            dir.join("node_modules").is_dir(),
            "the TimescaleDB test server's packages are missing: run `npm ci --prefix tools/timescaledb` \
             in the project root (or set CK_TEST_TIMESCALE_URL to a TimescaleDB server)"
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.mjs"))
            .args(["--port", "0", "--exit-with-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("could not start Node.js for the TimescaleDB test server ({e}): install Node.js (`apt-get install -y nodejs`)")
            });
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = child.stdout.take().expect("piped stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the TimescaleDB test server's first line");
        let Some(addr) = line.trim().strip_prefix("listening ") else {
            panic!("the TimescaleDB test server did not come up; it printed {line:?}");
        };
        Server {
            url: format!("postgres://postgres@{addr}/postgres"),
            _stdin: stdin,
            _child: child,
        }
    }
}
