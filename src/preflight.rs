//! Start-up checks of what the options point at, and what drainit says
//! before the app starts, so that no misconfiguration stays silent until a
//! drain:
//!
//! - the drain file's directory must take a new file, as drainit's user:
//!   otherwise the first drain would find out, with the health check still
//!   green. Refused at start (exit 125), `--explain` included;
//! - a `DRAINIT_*` variable drainit does not know gets the nearest known
//!   name ("did you mean DRAINIT_DRAIN_DELAY?");
//! - one line with the settings in effect, when anything was set.
//!
//! The probe never touches the drain-file path itself (the stale-file check
//! in `drainfile.rs` does that): it makes a file nobody can name
//! (`O_TMPFILE`), or where the file system cannot, a new file of its own
//! (`O_CREAT|O_EXCL|O_NOFOLLOW|O_NONBLOCK`) that it removes at once, after
//! checking the name is still that file.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;
use std::time::SystemTime;

use crate::cli::{DRAIN_FILE, KillSource, LOG_VAR, Launch, OPTIONS, STOP_TIMEOUT};
use crate::drainfile::reason;
use crate::error::Error;
use crate::text;
use crate::time::format_duration;

/// With a drain file: refuses (125) unless drainit can create a file in its
/// directory, as the drain will.
pub fn check(launch: &Launch) -> Result<(), Error> {
    let Some(path) = &launch.drain_file else {
        return Ok(());
    };
    writable_dir(path).map_err(|problem| {
        let origin = if launch.drain_file_from_var {
            format!(" (from {})", DRAIN_FILE.var)
        } else {
            String::new()
        };
        Error::Usage(format!(
            "{}: {problem}: the drain could not write it; not starting{origin}",
            DRAIN_FILE.flag
        ))
    })
}

/// `Ok` when a new file can be made in `path`'s directory; else what stops it.
fn writable_dir(path: &Path) -> Result<(), String> {
    let shown = text::path(path);
    if path.file_name().is_none() {
        return Err(format!("{shown} is not a path to a file"));
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let cannot = |e: &io::Error| {
        format!(
            "cannot create {shown}: directory {}: {} (drainit runs as uid {})",
            text::path(dir),
            reason(e),
            crate::sys::euid()
        )
    };
    match unnamed_file(dir) {
        Ok(_) => Ok(()),
        // The file system (or kernel) has no O_TMPFILE: a named probe.
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR)) => {
            named_probe(dir).map_err(|e| cannot(&e))
        }
        Err(e) => Err(cannot(&e)),
    }
}

/// A file in `dir` with no name: nothing to remove, nothing anyone can see.
fn unnamed_file(dir: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .mode(0o600)
        .custom_flags(libc::O_TMPFILE | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(dir)
}

/// A new file of drainit's own in `dir`, removed at once; the name is only
/// removed while it is still the file drainit made.
fn named_probe(dir: &Path) -> io::Result<()> {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let name = dir.join(format!(
        ".drainit-probe-{}-{nanos:x}.tmp",
        std::process::id()
    ));
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(&name)?;
    let made = file.metadata()?;
    let still = fs::symlink_metadata(&name)
        .is_ok_and(|now| now.dev() == made.dev() && now.ino() == made.ino());
    if still {
        fs::remove_file(&name)?;
    }
    Ok(())
}

/// Every variable drainit reads.
fn known_variables() -> impl Iterator<Item = &'static str> {
    OPTIONS.iter().map(|o| o.var).chain([LOG_VAR])
}

/// The known variable nearest to `name` (an unknown `DRAINIT_*` one), if one
/// is close enough to be a typo.
pub fn nearest_variable(name: &str) -> Option<&'static str> {
    nearest(&name.to_ascii_uppercase(), known_variables())
}

/// The name among `known` nearest to `name`, if close enough to be a typo: at
/// most 2 edits, or 3 for names of 16 bytes or more.
pub fn nearest<'a>(name: &str, known: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    // A templated name can be huge: nothing that long is a typo of ours.
    if name.len() > 64 {
        return None;
    }
    let most = if name.len() >= 16 { 3 } else { 2 };
    known
        .map(|k| (edit_distance(name, k), k))
        .filter(|(d, _)| *d <= most)
        .min_by_key(|(d, _)| *d)
        .map(|(_, k)| k)
}

/// Levenshtein distance over bytes (names are ASCII), one row at a time.
fn edit_distance(a: &str, b: &str) -> usize {
    let b = b.as_bytes();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut diagonal = i;
        let mut next = vec![i.saturating_add(1)];
        for (j, cb) in b.iter().enumerate() {
            let above = row.get(j.saturating_add(1)).copied().unwrap_or(usize::MAX);
            let left = next.last().copied().unwrap_or(usize::MAX);
            let replace = diagonal.saturating_add(usize::from(ca != *cb));
            next.push(
                replace
                    .min(above.saturating_add(1))
                    .min(left.saturating_add(1)),
            );
            diagonal = above;
        }
        row = next;
    }
    row.last().copied().unwrap_or(usize::MAX)
}

/// The warning for an unknown `DRAINIT_*` variable (`name` escaped already).
pub fn unknown_variable_warning(name: &str) -> String {
    match nearest_variable(name) {
        Some(known) => format!(
            "ignoring unknown variable {name}: did you mean {known}? (see drainit --help for the DRAINIT_* variables)"
        ),
        None => format!(
            "ignoring unknown variable {name} (see drainit --help for the DRAINIT_* variables)"
        ),
    }
}

/// The one start line: the settings in effect, e.g. `version 0.2.0: drain on
/// SIGTERM: drain file /tmp/draining, delay 10s, stop signal as received,
/// SIGKILL at t+29s (--stop-timeout 30s minus 1s); health listener
/// 0.0.0.0:8081; signals to the app's process group`.
pub fn start_line(launch: &Launch) -> String {
    let mut parts = Vec::new();
    match &launch.policy.drain {
        Some(drain) => {
            let file = launch.drain_file.as_ref().map_or_else(
                || "no drain file".to_string(),
                |p| format!("drain file {}", text::path(p)),
            );
            let stop = drain
                .stop_signal
                .map_or_else(|| "as received".to_string(), |s| s.to_string());
            let kill = match (drain.kill_after, launch.kill_source, launch.stop_timeout) {
                (Some(k), Some(KillSource::StopTimeout), Some(stop)) => format!(
                    "SIGKILL at t+{} ({} {} minus 1s)",
                    format_duration(k),
                    STOP_TIMEOUT.flag,
                    format_duration(stop)
                ),
                (Some(k), _, _) => format!("SIGKILL at t+{}", format_duration(k)),
                (None, _, _) => format!(
                    "no kill deadline (set {} to the orchestrator's)",
                    STOP_TIMEOUT.flag
                ),
            };
            parts.push(format!(
                "drain on {}: {file}, delay {}, stop signal {stop}, {kill}",
                drain.on,
                format_duration(drain.delay)
            ));
        }
        None => parts.push("no drain (no drain option set): SIGTERM is passed on at once".into()),
    }
    if let Some(listen) = &launch.listen {
        parts.push(format!("health listener {}", listen.address));
    }
    parts.push(
        if launch.group {
            "signals to the app's process group"
        } else {
            "signals to the app's pid only"
        }
        .to_string(),
    );
    format!(
        "version {}: {}",
        env!("CARGO_PKG_VERSION"),
        parts.join("; ")
    )
}

/// Whether the start line is worth a line: something was set (a drain, the
/// listener, or any `DRAINIT_*` variable that is not empty, a mistyped one
/// included). A
/// drainit given nothing says nothing until the app exits, as tini.
pub fn wants_start_line(launch: &Launch) -> bool {
    launch.policy.drain.is_some()
        || launch.listen.is_some()
        || std::env::vars_os().any(|(name, value)| {
            use std::os::unix::ffi::OsStrExt;
            // An empty variable counts as unset, here too.
            name.as_bytes().starts_with(b"DRAINIT_") && !value.is_empty()
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_nearest_name() {
        for (typo, want) in [
            ("DRAINIT_DRAIN_DELY", Some("DRAINIT_DRAIN_DELAY")),
            ("DRAINIT_DRAIN_DELAYS", Some("DRAINIT_DRAIN_DELAY")),
            ("DRAINIT_STOP_TIMOUT", Some("DRAINIT_STOP_TIMEOUT")),
            ("DRAINIT_STOPTIMEOUT", Some("DRAINIT_STOP_TIMEOUT")),
            ("drainit_grace", Some("DRAINIT_GRACE")),
            ("DRAINIT_LOGS", Some("DRAINIT_LOG")),
            ("DRAINIT_SOMETHING_ELSE", None),
            ("DRAINIT_", None),
        ] {
            assert_eq!(nearest_variable(typo), want, "{typo}");
        }
        assert_eq!(nearest_variable(&"X".repeat(100_000)), None);
    }

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("abc", ""), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("DELY", "DELAY"), 1);
    }

    #[test]
    fn a_missing_directory_is_named() {
        let e = writable_dir(Path::new("/nonexistent-drainit-dir/draining")).unwrap_err();
        assert!(e.contains("/nonexistent-drainit-dir"), "{e}");
        assert!(e.contains("no such file or directory"), "{e}");
        assert!(writable_dir(Path::new("/tmp/..")).is_err());
    }
}
