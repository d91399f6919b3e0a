//! Everything drainit writes itself: its log lines on stderr, the answers of
//! `--help`, `--version`, `--explain` and `--healthcheck` on stdout, and its
//! refusals. Every write is fallible and none can kill drainit:
//!
//! - SIGPIPE is blocked before the first write, so a pipe whose reader has
//!   gone gives EPIPE instead of a signal (whatever signal state the mode
//!   runs in);
//! - a log write never waits: a stderr that cannot take a line now (a log
//!   reader that stopped reading, a terminal stopped with Ctrl-S) costs the
//!   line, which is counted; the next line that gets out is preceded by one
//!   that says how many were dropped. So a stalled log never stops the
//!   forwarding, the reaping or a deadline;
//! - a line is written in one write of at most `PIPE_BUF` bytes (longer
//!   ones are cut), which a pipe takes whole or not at all;
//! - after EPIPE the logger writes nothing more, so no write can raise
//!   SIGPIPE again (drainit reads the SIGPIPE it raised on itself, and
//!   logging about it must not write);
//! - a line that can repeat once per signal (logged with target [`STORM`])
//!   is written once per storm: the rest are counted, and one line says how
//!   many there were once the storm is over;
//! - a refusal is written whatever the log level, waiting at most a second
//!   for room;
//! - what the caller must print reports its failure, for the exit code.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::error::Error;
use crate::sys::{self, FdKind, PollFd};
use crate::time::format_duration;

/// Writes `text` to stdout, all of it, or says why not. It goes through a
/// duplicate of descriptor 1, so that a closed stdout is an error here too
/// (std's own handle would silently drop the text).
pub fn print(text: &str) -> io::Result<()> {
    let _ = sys::block_sigpipe();
    let stdout = io::stdout().as_fd().try_clone_to_owned()?;
    std::fs::File::from(stdout).write_all(text.as_bytes())
}

/// How long a refusal may wait for room on stderr: drainit exits right after
/// it, and nothing runs that a wait could hold up.
const REFUSAL_PATIENCE: Duration = Duration::from_secs(1);

/// One line on stderr: `drainit: error: ...`, whatever the log level. Its
/// failure changes nothing: drainit exits with the error's code either way.
pub fn refuse(e: &Error) {
    let _ = emit(line("error: ", format_args!("{e}")), Some(REFUSAL_PATIENCE));
}

/// The log target for a line that can come once per signal (a stop of the
/// app, a failed kill): `warn!(target: STORM, ...)` writes it once per storm.
pub const STORM: &str = "drainit::storm";

/// `drainit: ` + `level` + `args` + newline, cut to [`MAX_WRITE`] bytes.
fn line(level: &str, args: std::fmt::Arguments) -> String {
    let mut line = String::with_capacity(128);
    let _ = write!(line, "drainit: {level}{args}");
    if line.len() >= MAX_WRITE {
        let cut = line.len();
        let mut end = MAX_WRITE.saturating_sub(40);
        while !line.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        line.truncate(end);
        let _ = write!(line, " [cut: {} more bytes]", cut.saturating_sub(end));
    }
    line.push('\n');
    line
}

/// At most this much in one write: `PIPE_BUF`, which a pipe takes whole or not
/// at all (with room for less, a non-blocking write takes nothing).
const MAX_WRITE: usize = 4096;

/// How log lines reach stderr.
enum How {
    /// Not looked at yet.
    Undecided,
    /// `pwritev2(RWF_NOWAIT)` on descriptor 2 (pipes, FIFOs, terminals, as
    /// far as the kernel can).
    NoWait,
    /// A socket: `send(MSG_DONTWAIT)`.
    Socket,
    /// The kernel cannot write to that pipe or terminal without waiting:
    /// writes go through a second, non-blocking opening of it (made from
    /// `/proc/self/fd/2`), so the app's descriptor keeps its flags.
    Reopened(File),
    /// Neither works: write only when `poll` says there is room (another
    /// writer can take the room between the two, so a write can still wait).
    PollFirst,
    /// A file or a device that is not a terminal: a write takes what it is
    /// given.
    Plain,
}

/// stderr as the logger writes to it.
struct Sink {
    how: How,
    /// Lines dropped since the last one that got out.
    dropped: u64,
    /// What is left of a line a write took only part of (a socket or a
    /// terminal can): it goes out before anything else.
    pending: Vec<u8>,
    /// A write failed with EPIPE: the reader is gone for good.
    gone: bool,
}

static SINK: Mutex<Sink> = Mutex::new(Sink {
    how: How::Undecided,
    dropped: 0,
    pending: Vec::new(),
    gone: false,
});

/// The lock, even if a thread died holding it (it cannot: no panics).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn would_block() -> io::Error {
    io::Error::from(io::ErrorKind::WouldBlock)
}

/// Writes `text` (a whole line) now, or not at all; with `patience`, waits
/// that long at most for room. A line that does not get out is counted.
fn emit(text: String, patience: Option<Duration>) -> io::Result<()> {
    let mut sink = lock(&SINK);
    if sink.gone {
        return Err(io::Error::from(io::ErrorKind::BrokenPipe));
    }
    let until = patience.map(|p| Instant::now().checked_add(p));
    loop {
        match sink.put(&text) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => match until {
                Some(Some(until)) if Instant::now() < until => {
                    sink.wait_for_room(until.saturating_duration_since(Instant::now()));
                }
                _ => {
                    sink.dropped = sink.dropped.saturating_add(1);
                    return Err(e);
                }
            },
            Err(e) => {
                if e.kind() == io::ErrorKind::BrokenPipe {
                    sink.gone = true;
                } else {
                    sink.dropped = sink.dropped.saturating_add(1);
                }
                return Err(e);
            }
        }
    }
}

impl Sink {
    /// The rest of a cut line, then the count of dropped lines, then `text`.
    fn put(&mut self, text: &str) -> io::Result<()> {
        if !self.pending.is_empty() {
            let pending = std::mem::take(&mut self.pending);
            match self.write_some(&pending) {
                Ok(n) => {
                    if let Some(rest) = pending.get(n..)
                        && !rest.is_empty()
                    {
                        self.pending = rest.to_vec();
                        return Err(would_block());
                    }
                }
                Err(e) => {
                    self.pending = pending;
                    return Err(e);
                }
            }
        }
        if self.dropped > 0 {
            let notice = line(
                "warning: ",
                format_args!(
                    "{} log line{} dropped: stderr could not take {} in time",
                    self.dropped,
                    if self.dropped == 1 { "" } else { "s" },
                    if self.dropped == 1 { "it" } else { "them" }
                ),
            );
            let both = notice.len().saturating_add(text.len()) <= MAX_WRITE;
            if both {
                // One write: a pipe takes both lines or neither.
                return self.put_line(&format!("{notice}{text}")).inspect(|()| {
                    self.dropped = 0;
                });
            }
            self.put_line(&notice)?;
            self.dropped = 0;
        }
        self.put_line(text)
    }

    /// One line, in one write if the kind of stderr allows it; a part that
    /// did not fit waits in `pending`.
    fn put_line(&mut self, text: &str) -> io::Result<()> {
        let bytes = text.as_bytes();
        let mut done = 0;
        while let Some(rest) = bytes.get(done..).filter(|r| !r.is_empty()) {
            match self.write_some(rest) {
                Ok(0) => return Err(io::Error::from(io::ErrorKind::WriteZero)),
                Ok(n) => done = done.saturating_add(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && done > 0 => {
                    self.pending = rest.to_vec();
                    return Ok(());
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One write of at most `buf`, never waiting (but for `Plain`).
    fn write_some(&mut self, buf: &[u8]) -> io::Result<usize> {
        loop {
            let result = match &mut self.how {
                How::Undecided => {
                    self.how = decide();
                    continue;
                }
                How::NoWait => match sys::write_nowait(2, buf) {
                    Err(e) if unsupported(&e) => {
                        self.how = reopen();
                        continue;
                    }
                    other => other,
                },
                How::Socket => sys::send_nowait(2, buf),
                How::Reopened(file) => file.write(buf),
                How::PollFirst => {
                    let mut fds = [PollFd::writable(2)];
                    match sys::poll(&mut fds, Some(Duration::ZERO)) {
                        Ok(n) if n > 0 => sys::write_fd(2, buf),
                        Ok(_) => Err(would_block()),
                        Err(e) => Err(e),
                    }
                }
                How::Plain => sys::write_fd(2, buf),
            };
            match result {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }

    /// Sleeps until stderr may take a write, at most `timeout`.
    fn wait_for_room(&self, timeout: Duration) {
        let fd = match &self.how {
            How::Reopened(file) => file.as_raw_fd(),
            _ => 2,
        };
        let mut fds = [PollFd::writable(fd)];
        if !matches!(sys::poll(&mut fds, Some(timeout)), Ok(n) if n > 0) {
            // Nothing to wait on (or a poll that fails): no spin either way.
            std::thread::sleep(timeout.min(Duration::from_millis(10)));
        }
    }
}

/// Whether a write failed because the file cannot do non-blocking writes
/// this way (`EOPNOTSUPP`; `EINVAL` or `ENOSYS` on kernels without them).
fn unsupported(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EOPNOTSUPP | libc::EINVAL | libc::ENOSYS)
    )
}

/// How to write to stderr, from what it is; SIGPIPE is blocked from here on.
fn decide() -> How {
    let _ = sys::block_sigpipe();
    match sys::fd_kind(2) {
        Some((FdKind::Pipe | FdKind::Terminal, _, _)) => How::NoWait,
        Some((FdKind::Socket, _, _)) => How::Socket,
        // A file takes what it is given; a closed stderr fails at once.
        Some((FdKind::Other, _, _)) | None => How::Plain,
    }
}

/// A second opening of stderr's pipe or terminal, non-blocking, if it can be
/// made and is the same file; `PollFirst` otherwise.
fn reopen() -> How {
    let reopened = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open("/proc/self/fd/2");
    match reopened {
        Ok(file) => {
            // The same pipe or terminal (a /proc of another PID namespace
            // could name someone else's descriptor).
            let same = match (sys::fd_kind(2), sys::fd_kind(file.as_raw_fd())) {
                (Some((_, dev, ino)), Some((_, dev2, ino2))) => dev == dev2 && ino == ino2,
                _ => false,
            };
            if same {
                How::Reopened(file)
            } else {
                How::PollFirst
            }
        }
        Err(_) => How::PollFirst,
    }
}

/// Lines that can repeat once per signal, by where they are logged.
struct Storm {
    file: &'static str,
    line: u32,
    level: Level,
    /// When its last line was written.
    written: Instant,
    /// When it last came.
    last: Instant,
    /// How many times it came since `written` without being written.
    more: u64,
    /// The last of those, as it would have been written.
    text: String,
}

/// A storm is over when its line has not come for this long.
const QUIET: Duration = Duration::from_secs(1);
/// During a storm that does not end, a count at least this often.
const SPAN: Duration = Duration::from_secs(10);

static STORMS: Mutex<Vec<Storm>> = Mutex::new(Vec::new());
/// Whether a storm has lines to count: read on every wake of the supervisor,
/// so that it reads the clock only then.
static STORM_PENDING: AtomicBool = AtomicBool::new(false);

/// `record`, with target [`STORM`]: written when it starts a storm, counted
/// otherwise.
fn storm(record: &Record, level: &'static str) {
    let (Some(file), Some(at)) = (record.file_static(), record.line()) else {
        return write_record(record, level);
    };
    let now = Instant::now();
    let mut storms = lock(&STORMS);
    if let Some(s) = storms.iter_mut().find(|s| s.file == file && s.line == at) {
        if now.saturating_duration_since(s.last) < QUIET {
            s.more = s.more.saturating_add(1);
            s.last = now;
            s.text = format!("{}", record.args());
            STORM_PENDING.store(true, Ordering::Relaxed);
            if now.saturating_duration_since(s.written) >= SPAN {
                sum_up(s, now);
            }
            return;
        }
        if s.more > 0 {
            sum_up(s, now);
        }
        s.written = now;
        s.last = now;
    } else {
        storms.push(Storm {
            file,
            line: at,
            level: record.level(),
            written: now,
            last: now,
            more: 0,
            text: String::new(),
        });
    }
    drop(storms);
    write_record(record, level);
}

/// One line for what a storm left unwritten: `N more times in 3.2s: <the last>`.
fn sum_up(s: &mut Storm, now: Instant) {
    let span = format_duration(s.last.saturating_duration_since(s.written));
    let _ = emit(
        line(
            level_word(s.level),
            format_args!(
                "{} more time{} in {span}: {}",
                s.more,
                if s.more == 1 { "" } else { "s" },
                s.text
            ),
        ),
        None,
    );
    s.more = 0;
    s.written = now;
}

/// Writes the count of each storm that is over (`all`: of every storm).
fn sum_up_storms(all: bool) {
    if !STORM_PENDING.load(Ordering::Relaxed) {
        return;
    }
    let now = Instant::now();
    let mut storms = lock(&STORMS);
    let mut pending = false;
    for s in storms.iter_mut().filter(|s| s.more > 0) {
        if all || now.saturating_duration_since(s.last) >= QUIET {
            sum_up(s, now);
        } else {
            pending = true;
        }
    }
    STORM_PENDING.store(pending, Ordering::Relaxed);
}

/// For the supervisor's loop, on every wake: writes the count of each storm
/// that is over. Without one pending, one atomic load and nothing else.
pub fn storms_over() {
    sum_up_storms(false);
}

/// `timeout`, or sooner if a storm may end before: when its count is due.
/// Without a storm pending, `timeout` itself, with no clock read.
pub fn sooner(timeout: Option<Duration>) -> Option<Duration> {
    if !STORM_PENDING.load(Ordering::Relaxed) {
        return timeout;
    }
    let now = Instant::now();
    let due = lock(&STORMS)
        .iter()
        .filter(|s| s.more > 0)
        .map(|s| {
            s.last
                .checked_add(QUIET)
                .map_or(Duration::ZERO, |end| end.saturating_duration_since(now))
        })
        .min();
    match (timeout, due) {
        (Some(t), Some(d)) => Some(t.min(d)),
        (t, d) => t.or(d),
    }
}

/// Before drainit exits: the counts of the storms, and of the lines dropped,
/// if stderr takes them now.
#[cfg_attr(test, allow(dead_code))]
pub fn finish() {
    sum_up_storms(true);
    let mut sink = lock(&SINK);
    if sink.dropped > 0 && !sink.gone {
        // `put` writes the count before the (empty) line.
        let _ = sink.put("");
    }
}

fn level_word(level: Level) -> &'static str {
    match level {
        Level::Info => "",
        Level::Warn => "warning: ",
        Level::Error => "error: ",
        Level::Debug => "debug: ",
        Level::Trace => "trace: ",
    }
}

fn write_record(record: &Record, level: &str) {
    let _ = emit(line(level, *record.args()), None);
    if lock(&SINK).gone {
        GONE.store(true, Ordering::Relaxed);
    }
}

/// Set once a write failed with EPIPE: from then on no record is even formatted.
static GONE: AtomicBool = AtomicBool::new(false);

/// drainit's logger: one line per record on stderr, `drainit: LEVEL: text`
/// (no level word for info), at most up to the level set at start.
struct Logger;

static LOGGER: Logger = Logger;

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level() && !GONE.load(Ordering::Relaxed)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = level_word(record.level());
        if record.target() == STORM {
            storm(record, level);
        } else {
            // What a storm left unsaid comes before what happened after it.
            sum_up_storms(true);
            write_record(record, level);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_fits_one_atomic_write_and_says_what_was_cut() {
        let short = line("warning: ", format_args!("short"));
        assert_eq!(short, "drainit: warning: short\n");
        let long = "é".repeat(5000);
        let cut = line("", format_args!("{long}"));
        assert!(cut.len() <= MAX_WRITE, "{}", cut.len());
        assert!(cut.ends_with(" more bytes]\n"), "{cut}");
        assert_eq!(cut.matches('\n').count(), 1);
    }
}
