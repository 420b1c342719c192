//! The archive's folder: which days it holds, the lock that makes one
//! process at a time change it, and replacing a day's file atomically.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use ck_archive::layout::{self, DAY_NANOS, Kind};
use ck_model::{Exchange, Instrument, Ts};

use crate::Error;

fn io(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.display().to_string(),
        source,
    }
}

/// The days of one instrument the archive holds a file for, oldest first,
/// that overlap `[from, to)`.
pub(crate) fn days(
    root: &Path,
    kind: Kind,
    exchange: Exchange,
    instrument: &Instrument,
    from: Ts,
    to: Ts,
) -> Result<Vec<i64>, Error> {
    if to <= from {
        return Ok(Vec::new());
    }
    let (first, last) = (layout::day_of(from), layout::day_of(Ts(to.0 - 1)));
    let mut days: Vec<i64> = all_days(root, kind, exchange, instrument)?
        .into_iter()
        .filter(|d| (first..=last).contains(d))
        .collect();
    days.sort_unstable();
    Ok(days)
}

/// Every day of one instrument the archive holds a file for, unordered.
pub(crate) fn all_days(
    root: &Path,
    kind: Kind,
    exchange: Exchange,
    instrument: &Instrument,
) -> Result<Vec<i64>, Error> {
    let dir = layout::instrument_dir(root, kind, exchange, instrument);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut days = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(&dir))?;
        let name = entry.file_name();
        let Some(day) = name
            .to_str()
            .and_then(|n| n.strip_prefix("date="))
            .and_then(layout::parse_date)
        else {
            continue;
        };
        if entry.path().join(FILE_NAME).is_file() {
            days.push(day);
        }
    }
    Ok(days)
}

/// The newest day of one instrument the archive holds.
pub(crate) fn newest_day(
    root: &Path,
    kind: Kind,
    exchange: Exchange,
    instrument: &Instrument,
) -> Result<Option<i64>, Error> {
    Ok(all_days(root, kind, exchange, instrument)?
        .into_iter()
        .max())
}

/// The instruments the archive holds days of.
pub(crate) fn instruments(root: &Path, kind: Kind) -> Result<Vec<(Exchange, Instrument)>, Error> {
    let mut found = Vec::new();
    for exchange_dir in sub_dirs(&root.join(kind.as_str()))? {
        let Some(exchange) =
            name_after(&exchange_dir, "exchange=").and_then(|e| e.parse::<Exchange>().ok())
        else {
            continue;
        };
        for instrument_dir in sub_dirs(&exchange_dir)? {
            if let Some(instrument) =
                name_after(&instrument_dir, "instrument=").and_then(|i| Instrument::parse(&i).ok())
            {
                found.push((exchange, instrument));
            }
        }
    }
    Ok(found)
}

fn name_after(path: &Path, prefix: &str) -> Option<String> {
    path.file_name()?
        .to_str()?
        .strip_prefix(prefix)
        .map(str::to_owned)
}

fn sub_dirs(dir: &Path) -> Result<Vec<PathBuf>, Error> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut dirs = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        if entry.file_type().map_err(io(dir))?.is_dir() {
            dirs.push(entry.path());
        }
    }
    Ok(dirs)
}

/// A day's file name.
const FILE_NAME: &str = "data.parquet";

/// What a file being written is called until it is complete: the day's
/// name, `.partial-`, the process id and a counter. Readers of the Hive
/// layout take `*.parquet` only, so they never see one.
pub(crate) fn partial_path(file: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let mut name = file.as_os_str().to_owned();
    name.push(format!(".partial-{}-{n}", std::process::id()));
    PathBuf::from(name)
}

fn is_partial(path: &Path) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.contains(".parquet.partial-"))
}

/// Makes `partial` (written and fsync'd) the day's `file`: rename, then
/// fsync the folder so the rename survives a crash.
pub(crate) fn install(partial: &Path, file: &Path) -> Result<(), Error> {
    std::fs::rename(partial, file).map_err(io(file))?;
    sync_dir(file)
}

/// Removes a day's file (and its folder when that is left empty).
pub(crate) fn remove_day(file: &Path) -> Result<(), Error> {
    match std::fs::remove_file(file) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(file)(e)),
    }
    sync_dir(file)?;
    if let Some(dir) = file.parent() {
        // Only an empty folder goes; another file keeps it.
        let _ = std::fs::remove_dir(dir);
    }
    Ok(())
}

fn sync_dir(file: &Path) -> Result<(), Error> {
    let Some(dir) = file.parent() else {
        return Ok(());
    };
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Removes the files a process left half-written when it stopped between
/// writing a day and renaming it: their rows are still in the store.
pub(crate) fn sweep_partials(root: &Path) -> Result<u64, Error> {
    let mut removed = 0;
    walk(root, &mut |path, _| {
        if is_partial(path) {
            std::fs::remove_file(path).map_err(io(path))?;
            removed += 1;
        }
        Ok(())
    })?;
    Ok(removed)
}

/// Bytes of every file under `root`.
pub(crate) fn size(root: &Path) -> Result<u64, Error> {
    let mut bytes = 0;
    walk(root, &mut |_, meta| {
        bytes += meta.len();
        Ok(())
    })?;
    Ok(bytes)
}

/// Calls `f` with every file under `root` (none when it does not exist).
fn walk(
    root: &Path,
    f: &mut dyn FnMut(&Path, &std::fs::Metadata) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(&dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io(&dir))?;
            let meta = entry.metadata().map_err(io(&dir))?;
            if meta.is_dir() {
                stack.push(entry.path());
            } else {
                f(&entry.path(), &meta)?;
            }
        }
    }
    Ok(())
}

/// Replaces a day's `file` by what `write` writes (and fsyncs) to a
/// partial file beside it: renamed over it, the folder fsync'd. The
/// partial file is removed when anything fails.
pub(crate) fn replace<T>(
    file: &Path,
    write: impl FnOnce(&Path) -> Result<T, ck_archive::Error>,
) -> Result<T, Error> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let partial = partial_path(file);
    let done = write(&partial)
        .map_err(Error::Archive)
        .and_then(|w| install(&partial, file).map(|()| w));
    if done.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    done
}

/// The archive's lock: held by the process moving days into it or
/// deleting days from it (several processors may share one archive).
/// Released when dropped.
#[derive(Debug)]
pub(crate) struct ArchiveLock {
    _file: File,
}

impl ArchiveLock {
    /// Waits for the lock on `<root>/.lock` (blocking).
    pub(crate) fn take(root: &Path) -> Result<ArchiveLock, Error> {
        std::fs::create_dir_all(root).map_err(io(root))?;
        let path = root.join(".lock");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io(&path))?;
        file.lock().map_err(io(&path))?;
        Ok(ArchiveLock { _file: file })
    }
}

/// The first and the end of a day, in nanoseconds.
pub(crate) const fn day_span(day: i64) -> (Ts, Ts) {
    (Ts(day * DAY_NANOS), Ts((day + 1) * DAY_NANOS))
}
