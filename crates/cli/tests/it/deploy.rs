//! The deployment files in `deploy/`: the systemd unit is valid (checked
//! by `systemd-analyze verify` where the machine has it) and starts the
//! service at boot with restart on failure; every config file they point to
//! loads; the compose file runs each role.

use std::path::PathBuf;

fn deploy(file: &str) -> PathBuf {
    let path = ck_testkit::project_root().join("deploy").join(file);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

fn read(file: &str) -> String {
    std::fs::read_to_string(deploy(file)).expect("read deploy file")
}

/// `key=value` lines of one `[section]` of a unit file.
fn section(unit: &str, name: &str) -> Vec<(String, String)> {
    let mut inside = false;
    let mut out = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == format!("[{name}]");
        } else if inside
            && !line.starts_with('#')
            && let Some((k, v)) = line.split_once('=')
        {
            out.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    out
}

fn value<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

fn load(file: &str) {
    let config = ck_app::config::AppConfig::load(Some(&deploy(file)), Vec::new())
        .unwrap_or_else(|e| panic!("deploy/{file} does not load: {e}"));
    config
        .settings()
        .unwrap_or_else(|e| panic!("deploy/{file} is not valid: {e}"));
}

#[test]
fn the_systemd_unit_starts_at_boot_restarts_on_failure_and_verifies() {
    let unit = read("candlekeep.service");
    let service = section(&unit, "Service");
    let exec = value(&service, "ExecStart").expect("ExecStart");
    assert!(exec.starts_with("/usr/local/bin/candlekeep "), "{exec}");
    assert!(exec.contains(" run "), "{exec}");
    assert_eq!(value(&service, "Restart"), Some("on-failure"));
    assert_eq!(
        value(&service, "KillSignal"),
        Some("SIGINT"),
        "stops by draining, as Ctrl-C"
    );
    assert_eq!(
        value(&section(&unit, "Install"), "WantedBy"),
        Some("multi-user.target"),
        "enabled at boot"
    );
    // The config it points to is deploy/candlekeep.toml, installed there.
    assert!(
        exec.contains("--config /etc/candlekeep/candlekeep.toml"),
        "{exec}"
    );
    assert!(unit.contains("deploy/candlekeep.toml /etc/candlekeep/candlekeep.toml"));
    load("candlekeep.toml");

    // Verify a copy pointing at this build and this config.
    let text = unit
        .replace(
            "/usr/local/bin/candlekeep",
            env!("CARGO_BIN_EXE_candlekeep"),
        )
        .replace(
            "/etc/candlekeep/candlekeep.toml",
            &deploy("candlekeep.toml").display().to_string(),
        );
    verify_unit("candlekeep.service", &text);
}

/// `systemd-analyze verify` of `text` saved as `name`, where the machine
/// has systemd-analyze (else the unit was checked by parsing only).
fn verify_unit(name: &str, text: &str) {
    let Ok(status) = std::process::Command::new("systemd-analyze")
        .arg("--version")
        .output()
    else {
        eprintln!("systemd-analyze is not on this machine: {name} was checked by parsing only");
        return;
    };
    assert!(status.status.success());
    let dir = tempfile::tempdir().expect("dir");
    let copy = dir.path().join(name);
    std::fs::write(&copy, text).expect("write unit");
    let out = std::process::Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("systemd-analyze verify");
    assert!(
        out.status.success(),
        "systemd-analyze verify {name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_template_unit_runs_one_role_each_after_its_local_services() {
    let unit = read("candlekeep@.service");
    let service = section(&unit, "Service");
    let exec = value(&service, "ExecStart").expect("ExecStart");
    assert!(
        exec.starts_with("/usr/local/bin/candlekeep run --role %i --listen ${CANDLEKEEP_LISTEN}"),
        "{exec}"
    );
    assert_eq!(value(&service, "KillSignal"), Some("SIGTERM"));
    assert_eq!(value(&service, "Restart"), Some("on-failure"));
    assert_eq!(
        value(&service, "EnvironmentFile"),
        Some("-/etc/candlekeep/%i.env"),
        "each role its own port and URLs"
    );
    let u = section(&unit, "Unit");
    for key in ["After", "Wants"] {
        let v = value(&u, key).expect(key);
        assert!(
            v.contains("postgresql.service") && v.contains("nats-server.service"),
            "{key}={v}"
        );
    }
    assert_eq!(
        value(&section(&unit, "Install"), "WantedBy"),
        Some("multi-user.target")
    );
    let text = unit.replace(
        "/usr/local/bin/candlekeep",
        env!("CARGO_BIN_EXE_candlekeep"),
    );
    verify_unit("candlekeep@processor.service", &text);
}

#[test]
fn the_compose_layout_runs_every_role_on_loadable_configs() {
    let compose = read("compose.yaml");
    for role in ["collector", "processor", "api"] {
        assert!(
            compose.contains(&format!("\"--role\", \"{role}\"")),
            "compose runs a {role}"
        );
    }
    for needed in [
        "postgres:",
        "nats:",
        "\"-js\"",
        "redis:",
        "CANDLEKEEP_STORE: postgres://",
    ] {
        assert!(compose.contains(needed), "compose has {needed}");
    }
    load("collector-binance.toml");
    load("collector-coinbase.toml");
    let dockerfile = read("Dockerfile");
    assert!(dockerfile.contains("cargo build --release --locked -p candlekeep"));
    assert!(dockerfile.contains("COPY deploy/candlekeep.toml /etc/candlekeep/candlekeep.toml"));
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/health/live"));
    assert!(
        compose.contains("CANDLEKEEP_NATS__MAX_BYTES")
            && compose.contains("CANDLEKEEP_RETENTION__TAPES"),
        "a stream size limit and tape retention by default"
    );
    let ignore = std::fs::read_to_string(ck_testkit::project_root().join(".dockerignore"))
        .expect(".dockerignore");
    assert!(ignore.lines().any(|l| l.trim() == "target/"), "{ignore}");
}
