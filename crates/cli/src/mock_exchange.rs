//! `candlekeep mock-exchange`: one venue's mock on ports the user chooses,
//! so a whole cluster can run offline (each collector pointed at a mock).

use std::net::SocketAddr;
use std::path::PathBuf;

use ck_model::{Exchange, Ts};

use crate::demo_data::{DEMO_VENUES, recorded_at};

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
    if request.venue == Exchange::Binance {
        return serve_binance(&request, &recording).await;
    }
    anyhow::ensure!(
        request.skip_every.is_none(),
        "--skip-every is for the Binance mock only"
    );
    let mut listeners = [
        ck_mock::Listening::bind(request.listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {}: {e}", request.listen))?,
        ck_mock::Listening::bind(request.rest_listen)
            .await
            .map_err(|e| anyhow::anyhow!("binding {}: {e}", request.rest_listen))?,
    ];
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
    tokio::select! {
        first = ck_mock::first_client(&mut listeners) => first?,
        _ = stop.next() => return Ok(()),
    }
    let [ws, rest] = listeners;
    let now = Ts::now();
    let rest = ck_mock::RestMock::on(
        rest,
        ck_mock::RestMock::for_venue(request.venue, &recording, Some(now)),
    )
    .await?;
    if let (Some(rest), Some(every)) = (&rest, request.rest_429_every) {
        rest.set_faults(ck_mock::RestFaults {
            every_429: Some(every),
            delay: None,
        });
    }
    let _venue = ck_mock::venue::MockVenue::start_on(
        ws,
        request.venue,
        &recording,
        ck_mock::venue::VenueOptions {
            shift_to: Some(now),
            speed: request.speed,
            laps: if request.looped { u64::MAX } else { 1 },
            drop_every: request.drop_every,
            malformed_every: request.malformed_every,
            ..Default::default()
        },
    )
    .await?;
    eprintln!(
        "mock {}: first client connected; times moved to now",
        request.venue
    );
    stop.next().await;
    Ok(())
}

async fn serve_binance(
    request: &MockRequest,
    recording: &[ck_bus::RawMessage],
) -> anyhow::Result<()> {
    let options = ck_mock::binance::MockOptions {
        speed: request.speed,
        looped: request.looped,
        faults: ck_mock::binance::Faults {
            drop_every: request.drop_every,
            skip_every: request.skip_every,
            malformed_every: request.malformed_every,
            rest_429_every: request.rest_429_every,
            ..Default::default()
        },
        ..Default::default()
    };
    let mock = ck_mock::binance::MockBinance::start_on(
        request.listen,
        request.rest_listen,
        recording,
        options,
    )
    .await?;
    eprintln!(
        "mock binance: WebSocket {} and REST {} with {} messages; Ctrl-C to stop",
        mock.ws_url(),
        mock.rest_url(),
        mock.len()
    );
    crate::stop::StopSignals::listen()?.next().await;
    Ok(())
}

/// The recording of `venue` compiled into the binary, written out to be read.
fn built_in(venue: Exchange, data_dir: &std::path::Path) -> anyhow::Result<PathBuf> {
    let dir = crate::demo_data::extract(&data_dir.join("demo-recordings"))?;
    if venue == Exchange::Binance {
        return Ok(dir.join(crate::demo_data::BINANCE));
    }
    let (_, file, _) = DEMO_VENUES
        .iter()
        .find(|(e, _, _)| *e == venue)
        .ok_or_else(|| anyhow::anyhow!("no built-in recording of {venue}; name one"))?;
    crate::demo_data::recording_in(&dir, file).ok_or_else(|| {
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
        let r = ck_sources::recordings::Recording::open(f)?;
        anyhow::ensure!(
            r.exchange() == venue,
            "{} is a recording of {}, not of {venue} (--venue)",
            f.display(),
            r.exchange()
        );
        recording.extend(r.filter_map(Result::ok));
    }
    anyhow::ensure!(
        !recording.is_empty(),
        "the recordings hold no messages of {venue}"
    );
    Ok(recording)
}
