//! `candlekeep`: the command line. Glue only; the work is in the libraries.

mod args;
mod demo_data;
mod export;
mod export_book;
mod export_hftbacktest;
mod mock_exchange;
mod output;
mod stop;

use std::process::ExitCode;
use std::time::Instant;

use ck_app::backfill::{BackfillJob, JobMeter};
use ck_app::config::AppConfig;
use ck_app::pipeline::{PipelineReport, Source, SourceReport};
use ck_app::topology::Topology;
use ck_model::Ts;
use ck_sources::import::{ImportFormat, ImportTarget};
use ck_sources::replay::{ReplayOptions, ReplayStats};
use ck_store::{CandleSource, RangeQuery};
use clap::Parser as _;

use crate::args::{Cli, Command, ExportFormat, ExportKind, Format, RangeArgs, SourceArg};
use crate::output::print_report;
use tokio_util::sync::CancellationToken;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log) {
        Ok(f) => f,
        Err(e) => {
            eprintln!(
                "error: --log {:?} is not a log filter ({e}); try `info`, `debug` or `ck_sources=debug,info`",
                cli.log
            );
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(cli.color.enabled())
        .with_writer(|| ScrubbedStderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", scrubbed(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

/// The configuration's secrets (passwords in URLs, webhook paths, tokens),
/// known once it is loaded: no log line or error shows them.
static SECRETS: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

fn scrubbed(text: &str) -> String {
    match SECRETS.get() {
        Some(secrets) => ck_bus::secrets::scrub(text, secrets),
        None => text.to_owned(),
    }
}

/// Standard error, with the configuration's secrets scrubbed from each log
/// line (the log formatter writes a whole line at once).
struct ScrubbedStderr;

impl std::io::Write for ScrubbedStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match SECRETS.get().filter(|s| !s.is_empty()) {
            Some(secrets) => {
                let clean = ck_bus::secrets::scrub(&String::from_utf8_lossy(buf), secrets);
                std::io::stderr().write_all(clean.as_bytes())?;
                Ok(buf.len())
            }
            None => std::io::stderr().write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

fn load_config(cli: &Cli) -> anyhow::Result<AppConfig> {
    let env: Vec<(String, String)> = std::env::vars()
        .filter(|(k, _)| k != "CANDLEKEEP_DATA_DIR" && k != "CANDLEKEEP_STORE")
        .collect();
    let mut config = AppConfig::load(cli.config.as_deref(), env)?;
    if let Some(dir) = &cli.data_dir {
        config.data_dir.clone_from(dir);
    }
    if let Some(url) = &cli.store {
        config.store.url.clone_from(url);
    }
    Ok(config)
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load_config(&cli)?;
    let _ = SECRETS.set(config.secrets());
    let settings = config.settings()?;
    match cli.command {
        Command::Config => {
            print!("{}", config.to_toml()?);
            Ok(())
        }
        Command::Run { listen, role } => {
            let topology = Topology::build(&settings, role, listen).await?;
            tracing::info!(store = %settings.store, ?role, "starting");
            output::announce_api(&topology);
            let token = CancellationToken::new();
            stop::cancel_on_signal(token.clone(), "stopping: finishing queued work")?;
            let started = Instant::now();
            if let Some(report) = topology.run(token).await? {
                print_report(&report, started);
            }
            Ok(())
        }
        Command::Serve { listen } => {
            let topology = Topology::serve(&settings, listen).await?;
            output::announce_api(&topology);
            let token = CancellationToken::new();
            stop::cancel_on_signal(token.clone(), "stopping")?;
            topology.run(token).await?;
            Ok(())
        }
        Command::Migrate { from, to } => {
            let parse = |url: &str| {
                ck_app::config::StoreLocation::parse(url, &settings.data_dir)
                    .map_err(|e| anyhow::anyhow!("{e}"))
            };
            let (from, to) = (parse(&from)?, parse(&to)?);
            if from == to {
                anyhow::bail!("--from and --to name the same store ({from})");
            }
            // The source's archive is read with it: the target gets every row.
            let source = ck_app::with_archive(
                &settings,
                ck_app::open_location(&from, settings.durability).await?,
            );
            let target = ck_app::open_location(&to, settings.durability).await?;
            let started = Instant::now();
            let report = ck_app::migrate::copy_store(source.as_ref(), target.as_ref(), &|line| {
                eprintln!("{line}")
            })
            .await?;
            let (a, b) = (source.counts().await?, target.counts().await?);
            eprintln!(
                "copied {from} to {to} in {:.1} s: {} instruments, {} trades ({} inserted, {} already present), {} quotes, {} candles",
                started.elapsed().as_secs_f64(),
                report.instruments,
                report.trades,
                report.trades_inserted,
                report.trades - report.trades_inserted,
                report.quotes,
                report.candles
            );
            if b.trades < a.trades || b.quotes < a.quotes || b.candles < a.candles {
                anyhow::bail!(
                    "the target holds fewer rows than the source: trades {} < {}, quotes {} < {}, candles {} < {}",
                    b.trades,
                    a.trades,
                    b.quotes,
                    a.quotes,
                    b.candles,
                    a.candles
                );
            }
            Ok(())
        }
        Command::Replay {
            files,
            speed,
            exchange,
            books,
        } => {
            if let Some(s) = speed.filter(|s| !s.is_finite() || *s <= 0.0) {
                anyhow::bail!("--speed must be a positive number, got {s}");
            }
            let source = Source::Replay {
                files,
                options: ReplayOptions {
                    speed,
                    exchange,
                    books: books.then(|| ck_sources::replay::ReplayBookOptions {
                        snapshot_every_ns: i64::try_from(settings.config.books.snapshot_every_secs)
                            .unwrap_or(i64::MAX / 1_000_000_000)
                            .saturating_mul(1_000_000_000),
                        sink: None,
                    }),
                },
            };
            let report = run_to_end(&settings, source).await?;
            for s in &report.sources {
                if let SourceReport::Replay(ReplayStats { books: Some(b), .. }) = s {
                    eprintln!(
                        "books: {} messages applied, {} incidents, {} diffs held for a snapshot the recordings lack, {} symbols of no known instrument",
                        b.applied, b.incidents, b.held, b.unmapped
                    );
                }
            }
            // Damaged input: everything readable is stored, and the exit
            // status says that something was not.
            let unreadable: u64 = report
                .sources
                .iter()
                .map(|s| match s {
                    SourceReport::Replay(r) => r.bad_records,
                    _ => 0,
                })
                .sum();
            anyhow::ensure!(
                unreadable == 0,
                "{unreadable} records could not be read and were skipped (damaged or cut-short input; `candlekeep errors` lists them); everything readable was stored"
            );
            Ok(())
        }
        Command::Import {
            exchange,
            instrument,
            ts_unit,
            format,
            file,
        } => {
            let target = ImportTarget {
                exchange,
                instrument,
                received: Ts::now(),
                ts_unit,
                format: format.unwrap_or_else(|| ImportFormat::detect(&file)),
            };
            run_to_end(&settings, Source::Import { file, target }).await?;
            Ok(())
        }
        Command::Candles {
            range,
            interval,
            source,
        } => {
            let q = range_query(&range)?;
            let store = ck_app::open_existing_store(&settings).await?;
            let source = match source {
                SourceArg::Ours => CandleSource::Ours,
                SourceArg::Exchange => CandleSource::Exchange,
            };
            if range.format == Format::Csv {
                // From the same records as the API's answers (the CSV
                // rows kept in packed days, and archived days').
                let records = store
                    .candle_records(&q, interval, source, false, ck_store::RecordForm::Csv)
                    .await?;
                if records.is_empty() {
                    series_stored(store.as_ref(), &range).await?;
                }
                return output::candle_records_csv(&records);
            }
            let candles = store.candles(&q, interval, source).await?;
            if candles.is_empty() {
                series_stored(store.as_ref(), &range).await?;
            }
            output::candles(&candles)
        }
        Command::Trades { range } => {
            let q = range_query(&range)?;
            let store = ck_app::open_existing_store(&settings).await?;
            let trades = store.trades(&q).await?;
            if trades.is_empty() {
                series_stored(store.as_ref(), &range).await?;
            }
            output::trades(&trades, range.format == Format::Csv)
        }
        Command::Book {
            exchange,
            instrument,
            at,
            depth,
            format,
        } => {
            let source = ck_api::book::BookSource {
                live: None,
                root: Some(settings.config.archive.root(&settings.data_dir)),
            };
            let depth = usize::try_from(depth).unwrap_or(ck_api::book::MAX_DEPTH);
            let answer = ck_api::book::find_book(&source, exchange, &instrument, at, depth)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if format == Format::Csv {
                print!("{}", answer.csv());
            } else {
                println!("{}", answer.json());
            }
            Ok(())
        }
        Command::Quotes { range } => {
            let q = range_query(&range)?;
            let store = ck_app::open_existing_store(&settings).await?;
            let quotes = store.quotes(&q).await?;
            if quotes.is_empty() {
                series_stored(store.as_ref(), &range).await?;
            }
            output::quotes(&quotes, range.format == Format::Csv)
        }
        Command::Export {
            kind,
            exchange,
            instrument,
            interval,
            from,
            to,
            format,
            out,
        } => {
            let book_format = matches!(format, ExportFormat::Tardis | ExportFormat::Hftbacktest);
            if (kind == ExportKind::Book) != book_format {
                anyhow::bail!(
                    "`--kind book` is exported as `--format tardis` (Tardis's incremental_book_L2 CSV) or `--format hftbacktest` (its .npz events), and only those"
                );
            }
            let kind = match kind {
                ExportKind::Trades => export::StoreKind::Trades,
                ExportKind::Quotes => export::StoreKind::Quotes,
                ExportKind::Candles => export::StoreKind::Candles,
                ExportKind::Book => {
                    let request = export_book::BookExport {
                        root: settings.config.archive.root(&settings.data_dir),
                        exchange,
                        instrument,
                        from,
                        to: to.unwrap_or_else(Ts::now),
                        out,
                    };
                    if format == ExportFormat::Hftbacktest {
                        // The trades of the range too: hftbacktest fills
                        // orders against them.
                        let store = ck_app::open_existing_store(&settings).await?;
                        let trades = store
                            .trades(&ck_store::RangeQuery {
                                exchange,
                                instrument: request.instrument.clone(),
                                from: from.unwrap_or(Ts(i64::MIN)),
                                to: request.to,
                                limit: usize::MAX,
                            })
                            .await?;
                        let events = tokio::task::spawn_blocking({
                            let request = request.clone();
                            move || export_hftbacktest::export(&request, &trades)
                        })
                        .await??;
                        eprintln!(
                            "exported {events} hftbacktest events to {}",
                            request.out.display()
                        );
                        return Ok(());
                    }
                    let rows = tokio::task::spawn_blocking({
                        let request = request.clone();
                        move || export_book::export(&request)
                    })
                    .await??;
                    eprintln!("exported {rows} book rows to {}", request.out.display());
                    return Ok(());
                }
            };
            let store = ck_app::open_existing_store(&settings).await?;
            let intervals = match interval {
                Some(i) => vec![i],
                None => settings.aggregator.intervals.clone(),
            };
            let request = export::ExportRequest {
                kind,
                exchange,
                instrument,
                intervals,
                from,
                to: to.unwrap_or_else(Ts::now),
                format,
                out,
            };
            let rows = export::export(store, &request).await?;
            eprintln!(
                "exported {rows} {} to {}",
                request.kind.as_str(),
                request.out.display()
            );
            Ok(())
        }
        Command::Instruments { format } => {
            let store = ck_app::open_existing_store(&settings).await?;
            output::instruments(&store.instruments().await?, format == Format::Csv)
        }
        Command::MockExchange {
            venue,
            listen,
            rest_listen,
            speed,
            looped,
            drop_every,
            skip_every,
            malformed_every,
            rest_429_every,
            files,
            store: _,
        } => {
            let request = mock_exchange::MockRequest {
                venue,
                listen,
                rest_listen,
                speed,
                looped,
                drop_every,
                skip_every,
                malformed_every,
                rest_429_every,
                files,
            };
            mock_exchange::serve(request, &settings.data_dir).await
        }
        Command::Gaps {
            exchange,
            instrument,
            limit,
            format,
        } => {
            let store = ck_app::open_existing_store(&settings).await?;
            let gaps = store.gaps(exchange, instrument.as_ref(), limit).await?;
            output::gaps(&gaps, format == Format::Csv)
        }
        Command::Demo {
            recording,
            speed,
            listen,
            venues,
            licenses,
        } => {
            if licenses {
                print!("{}", demo_data::LICENSES);
                return Ok(());
            }
            demo_data::run(&settings, recording, speed, listen, venues).await
        }
        Command::Prune { dry_run } => {
            let policy = config.retention.policy()?;
            let store = ck_app::open_store(&settings).await?;
            let now = Ts::now();
            let report =
                ck_app::retention::prune(&settings, store.as_ref(), &policy, now, dry_run).await?;
            output::prune(
                &report,
                &ck_app::retention::plan(&settings, &policy, now, dry_run),
            )
        }
        Command::Archive => {
            let store = ck_app::open_existing_store(&settings).await?;
            let cutoff = ck_app::archive::cutoff(&settings, Ts::now());
            let report = store.archive_settled(cutoff).await?;
            println!(
                "archived {} day file(s): {} trades, {} quotes, {} candles, {} bytes; {} rows left the store; {} half-written file(s) of an interrupted pass removed",
                report.days,
                report.trades,
                report.quotes,
                report.candles,
                report.bytes,
                report.deleted,
                report.swept
            );
            Ok(())
        }
        Command::Errors { limit, format } => {
            let store = ck_app::open_existing_store(&settings).await?;
            output::errors(&store.ingest_errors(limit).await?, format == Format::Csv)
        }
        Command::Backfill {
            exchange,
            instruments,
            from,
            to,
            trades,
            candles,
            rest_url,
        } => {
            let request = ck_app::backfill::BackfillRequest {
                exchange,
                instruments,
                from,
                to,
                trades,
                candles,
                rest_url,
            };
            let (jobs, history) = request.plan(&settings)?;
            run_backfill(&settings, jobs, history).await
        }
        Command::Verify {
            exchange,
            instrument,
            interval,
            from,
            to,
        } => {
            anyhow::ensure!(from < to, "--from ({from}) must be before --to ({to})");
            let store = ck_app::open_existing_store(&settings).await?;
            let q = RangeQuery {
                exchange,
                instrument: instrument.clone(),
                from,
                to,
                limit: usize::MAX,
            };
            let theirs = store.candles(&q, interval, CandleSource::Exchange).await?;
            anyhow::ensure!(
                !theirs.is_empty(),
                "no {exchange} {instrument} {interval} candles from the exchange are stored in that range; fetch them first: candlekeep backfill --exchange {exchange} --instrument {instrument} --from {from} --to {to} --candles {interval}"
            );
            let ours = store.candles(&q, interval, CandleSource::Ours).await?;
            let fields = exchange.candle_fields();
            let report = ck_app::verify::compare(&ours, &theirs, fields);
            for d in &report.differences {
                println!("{d}");
            }
            let names: Vec<&str> = fields.iter().map(|f| f.as_str()).collect();
            eprintln!(
                "{} candles on both sides: {} equal; {} differences (compared: {}, the fields {exchange} publishes)",
                report.compared,
                report.equal,
                report.differences.len(),
                names.join(", ")
            );
            if report.differences.is_empty() {
                Ok(())
            } else {
                Err(anyhow::anyhow!(
                    "our candles differ from the exchange's ({} differences)",
                    report.differences.len()
                ))
            }
        }
    }
}

/// Runs backfill jobs through the pipeline with a progress bar on stderr.
async fn run_backfill(
    settings: &ck_app::config::Settings,
    jobs: Vec<BackfillJob>,
    history: std::sync::Arc<dyn ck_sources::history::History>,
) -> anyhow::Result<()> {
    let store = ck_app::open_store(settings).await?;
    let meters: Vec<std::sync::Arc<JobMeter>> =
        jobs.iter().map(|_| std::sync::Arc::default()).collect();
    let bar = indicatif::ProgressBar::new(jobs.len() as u64 * 1000);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% eta {eta} {msg}",
        )
        .map_err(|e| anyhow::anyhow!("progress bar template: {e}"))?,
    );
    let watch = meters.clone();
    let ticker_bar = bar.clone();
    let ticker = tokio::spawn(async move {
        loop {
            let done: u64 = watch
                .iter()
                .map(|m| m.permille.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            let rows: u64 = watch
                .iter()
                .map(|m| m.rows.load(std::sync::atomic::Ordering::Relaxed))
                .sum();
            ticker_bar.set_position(done);
            ticker_bar.set_message(format!("{rows} rows"));
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    });
    let token = CancellationToken::new();
    stop::cancel_on_signal(
        token.clone(),
        "stopping: committing what was fetched; rerun to continue",
    )?;
    let started = Instant::now();
    let source = Source::Backfill {
        jobs,
        history,
        meters,
    };
    let report = ck_app::topology::run_to_end(settings, store, vec![source], token).await;
    ticker.abort();
    bar.finish_and_clear();
    let report = report?;
    print_report(&report, started);
    let failed = report
        .sources
        .iter()
        .filter_map(|s| match s {
            SourceReport::Backfill(jobs) => Some(jobs.iter().filter(|j| j.is_err()).count()),
            _ => None,
        })
        .sum::<usize>();
    anyhow::ensure!(
        failed == 0,
        "{failed} backfill job(s) failed (see above); rerun to continue where they stopped"
    );
    Ok(())
}

/// Runs one finite source (replay, import) through the pipeline, on exchange
/// time, and prints what it did.
async fn run_to_end(
    settings: &ck_app::config::Settings,
    source: Source,
) -> anyhow::Result<PipelineReport> {
    let store = ck_app::open_store(settings).await?;
    let started = Instant::now();
    let report =
        ck_app::topology::run_to_end(settings, store, vec![source], CancellationToken::new())
            .await?;
    print_report(&report, started);
    Ok(report)
}

/// Whether the store holds `range`'s instrument at all: an empty answer is
/// an error when it does not, naming what the store holds instead (an empty
/// range of a stored series is an empty answer, status 0).
async fn series_stored(store: &dyn ck_store::Store, range: &RangeArgs) -> anyhow::Result<()> {
    let stored = store.instruments().await?;
    if stored
        .iter()
        .any(|s| s.info.exchange == range.exchange && s.info.instrument == range.instrument)
    {
        return Ok(());
    }
    let hint = ck_store::stored_hint(&stored, range.exchange, usize::MAX);
    anyhow::bail!(
        "no data for {} {}: {hint} (`candlekeep instruments` lists them)",
        range.exchange,
        range.instrument
    )
}

fn range_query(r: &RangeArgs) -> anyhow::Result<RangeQuery> {
    let from = r.from.unwrap_or(Ts(i64::MIN));
    let to = r.to.unwrap_or(Ts(i64::MAX));
    if from >= to {
        anyhow::bail!("--from ({from}) must be before --to ({to})");
    }
    Ok(RangeQuery {
        exchange: r.exchange,
        instrument: r.instrument.clone(),
        from,
        to,
        limit: r.limit,
    })
}
