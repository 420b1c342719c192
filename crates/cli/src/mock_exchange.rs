//! `candlekeep mock-exchange`: one venue's mock on ports the user chooses,
//! so a whole cluster can run offline (each collector pointed at a mock).

use std::net::SocketAddr;
use std::path::PathBuf;

use ck_model::Exchange;

use crate::demo_data::recorded_at;

/// What `mock-exchange` was asked for.
pub(crate) struct MockRequest {
    pub venue: Exchange,
    pub listen: SocketAddr,
    pub rest_listen: SocketAddr,
    pub speed: Option<f64>,
    pub looped: bool,
    pub drop_every: Option<usize>,
    pub skip_every: Option<usize>,
    pub malformed_every: Option<usize>,
    pub rest_429_every: Option<usize>,
    pub files: Vec<PathBuf>,
}

/// Serves the mock until Ctrl-C or SIGTERM.
pub(crate) async fn serve(request: MockRequest, data_dir: &std::path::Path) -> anyhow::Result<()> {
    if let Some(speed) = request.speed {
        anyhow::ensure!(
            speed.is_finite() && speed > 0.0,
            "--speed must be a positive number, got {speed}"
        );
    }
    let files = if request.files.is_empty() {
        vec![built_in(request.venue, data_dir)?]
    } else {
        request.files.clone()
    };
    let recording = read(request.venue, &files)?;
    let spec = ck_mock::venues::spec(request.venue)
        .ok_or_else(|| anyhow::anyhow!("candlekeep has no mock of {}", request.venue))?;
    let listen = (
        ck_mock::Listening::bind(request.listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {}: {e}", request.listen))?,
        ck_mock::Listening::bind(request.rest_listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {}: {e}", request.rest_listen))?,
    );
    let frames = recording
        .iter()
        .filter(|m| m.origin == ck_bus::Origin::Ws)
        .count();
    eprintln!(
        "mock {}: WebSocket ws://{} and REST http://{} with {frames} frames recorded {}; \
         times move to when the first client connects; Ctrl-C to stop",
        request.venue,
        request.listen,
        request.rest_listen,
        recorded_at(&recording),
    );
    let mut stop = crate::stop::StopSignals::listen()?;
    let start = spec.start(ck_mock::venues::MockStart {
        recording: &recording,
        listen: Some(listen),
        shift_to: None,
        speed: request.speed,
        looped: request.looped,
        faults: ck_mock::venues::StartFaults {
            drop_every: request.drop_every,
            skip_every: request.skip_every,
            malformed_every: request.malformed_every,
            rest_429_every: request.rest_429_every,
        },
    });
    let _mock = tokio::select! {
        mock = start => mock.map_err(|e| anyhow::anyhow!("mock {}: {e}", request.venue))?,
        _ = stop.next() => return Ok(()),
    };
    eprintln!(
        "mock {}: serving; its times are moved to when the first client connected",
        request.venue
    );
    stop.next().await;
    Ok(())
}

/// The recording of `venue` compiled into the binary, written out to be read.
fn built_in(venue: Exchange, data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let dir = crate::demo_data::extract(&data_dir.join("demo-recordings"))?;
    let demo = ck_mock::venues::spec(venue)
        .and_then(|m| m.demo)
        .ok_or_else(|| anyhow::anyhow!("no built-in recording of {venue}; name one"))?;
    crate::demo_data::recording_in(&dir, demo.file).ok_or_else(|| {
        anyhow::anyhow!(
            "the built-in recording of {venue} is missing from {}",
            dir.display()
        )
    })
}

/// Every message of `files`, which must all be recordings of `venue`.
pub(crate) fn read(venue: Exchange, files: &[PathBuf]) -> anyhow::Result<Vec<ck_bus::RawMessage>> {
    let mut recording = Vec::new();
    for f in files {
        // A file that names another venue is refused; one that names none
        // (hftbacktest's) is read as `venue`.
        let r = ck_sources::recordings::Recording::open_as(f, Some(venue))
            .map_err(|e| anyhow::anyhow!("{e} (--venue {venue})"))?;
        recording.extend(r.filter_map(Result::ok));
    }
    anyhow::ensure!(
        !recording.is_empty(),
        "the recordings hold no messages of {venue}"
    );
    Ok(recording)
}
