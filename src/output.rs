//! Everything drainit writes itself: its log lines on stderr, the answers of
//! `--help`, `--version`, `--explain` and `--healthcheck` on stdout, and its
//! refusals. Every write is fallible and none can kill drainit:
//!
//! - SIGPIPE is blocked before each write, so a pipe whose reader has gone
//!   gives EPIPE instead of a signal (whatever signal state the mode runs in);
//! - a log line that cannot be written is dropped; after EPIPE the logger
//!   writes nothing more, so no write can raise SIGPIPE again (drainit reads
//!   the SIGPIPE it raised on itself, and logging about it must not write);
//! - what the caller must print reports its failure, for the exit code.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::sync::atomic::{AtomicBool, Ordering};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::error::Error;
use crate::sys;

/// Writes `text` to stdout, all of it, or says why not. It goes through a
/// duplicate of descriptor 1, so that a closed stdout is an error here too
/// (std's own handle would silently drop the text).
pub fn print(text: &str) -> io::Result<()> {
    let _ = sys::block_sigpipe();
    let stdout = io::stdout().as_fd().try_clone_to_owned()?;
    std::fs::File::from(stdout).write_all(text.as_bytes())
}

/// One line on stderr: `drainit: error: ...`. Its failure changes nothing:
/// drainit exits 125 either way.
pub fn refuse(e: &Error) {
    let _ = write_line(format_args!("error: {e}"));
}

/// `drainit: ` and `args` as one line, in one write.
fn write_line(args: std::fmt::Arguments) -> io::Result<()> {
    let mut line = String::with_capacity(128);
    let _ = writeln!(line, "drainit: {args}");
    let _ = sys::block_sigpipe();
    io::stderr().lock().write_all(line.as_bytes())
}

/// drainit's logger: one line per record on stderr, `drainit: LEVEL: text`
/// (no level word for info), at most up to the level set at start.
struct Logger {
    /// Set once a write failed with EPIPE: the reader is gone for good.
    gone: AtomicBool,
}

static LOGGER: Logger = Logger {
    gone: AtomicBool::new(false),
};

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level() && !self.gone.load(Ordering::Relaxed)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            Level::Info => "",
            Level::Warn => "warning: ",
            Level::Error => "error: ",
            Level::Debug => "debug: ",
            Level::Trace => "trace: ",
        };
        if let Err(e) = write_line(format_args!("{level}{}", record.args()))
            && e.kind() == io::ErrorKind::BrokenPipe
        {
            self.gone.store(true, Ordering::Relaxed);
        }
    }

    fn flush(&self) {}
}

/// Logs go to stderr only (stdout belongs to the app), up to `level`.
pub fn init_logging(level: LevelFilter) {
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}
