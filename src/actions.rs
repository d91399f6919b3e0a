//! Drain actions: `--on-drain CMD` (run when a drain starts, beside the
//! delay), `--stop-command CMD` (run instead of sending the stop signal when
//! the delay ends) and `--on-drain-post URL` (an HTTP POST when a drain
//! starts, for images without curl).
//!
//! This part is what the options say: a command is split into words once,
//! at start, as a shell would split it but with no expansion at all (no
//! variables, no globs, no `~`); a shell runs only when the command names
//! one (`sh -c '...'`). And it is checked at start: a command that is not
//! there (or not executable) is drainit's error (125) then, not a surprise
//! at the drain, when nobody watches.
//!
//! The other part runs them, for the supervisor, never in its way. A command
//! starts with the app's signal state, in a process group of its own, with
//! stdin from /dev/null and its stdout and stderr on a pipe that the
//! supervisor's loop reads without blocking: each line goes to drainit's
//! stderr as `drainit: on-drain: LINE`, at most `LINES_PER_SECOND` lines
//! and `BYTES_PER_SECOND` bytes a second (more lines are dropped and
//! counted; past the bytes, the pipe is left alone until the next second, so
//! a flooding action waits on its own pipe and costs drainit one wake a
//! second). It gets `DRAINIT_REASON`, `DRAINIT_APP_PID` and, with a kill
//! deadline, `DRAINIT_DEADLINE_MS`. It is bounded: its group gets SIGKILL
//! `KILL_MARGIN` before the kill deadline, when the app exits, and when it
//! exits itself (what it left in its group). Its exit is told apart from the
//! app's and from orphans by its pid. Nothing an action does is fatal; a
//! stop command that cannot run or fails is replaced by the stop signal.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::time::Duration;

use log::{debug, info, warn};

use crate::error::{Error, os_reason};
use crate::exit::Status;
use crate::health::Url;
use crate::signals::Signal;
use crate::sys::{self, ChildSetup, Inherited, Program, StartError, Target};
use crate::text::Escaped;
use crate::time::{format_duration, since};

/// How much before the kill deadline drainit SIGKILLs the actions that still
/// run (at most half the time from the drain's start to the deadline).
pub const KILL_MARGIN: Duration = Duration::from_millis(500);
/// The longest an `--on-drain-post` may take.
pub const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// When, counted from the drain's start, drainit SIGKILLs the process group
/// of every action that still runs: `KILL_MARGIN` before the kill deadline
/// (`kill_at`, counted the same way), or halfway to it if that is sooner.
/// `None` without a kill deadline: actions then end when the app does.
pub fn kill_at(kill_at: Option<Duration>) -> Option<Duration> {
    let kill_at = kill_at?;
    let half = kill_at.checked_div(2).unwrap_or_default();
    Some(kill_at.saturating_sub(KILL_MARGIN.min(half)))
}

/// How long an `--on-drain-post` started at `at` (from the drain's start)
/// may take: until the actions' SIGKILL, and at most `POST_TIMEOUT`.
pub fn post_timeout(kill_after: Option<Duration>, at: Duration) -> Duration {
    kill_at(kill_after).map_or(POST_TIMEOUT, |k| k.saturating_sub(at).min(POST_TIMEOUT))
}

/// The drain actions the options ask for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Actions {
    /// `--on-drain`.
    pub on_drain: Option<Command>,
    /// `--stop-command`.
    pub stop_command: Option<Command>,
    /// `--on-drain-post`.
    pub post: Option<Url>,
}

impl Actions {
    pub fn any(&self) -> bool {
        self.on_drain.is_some() || self.stop_command.is_some() || self.post.is_some()
    }
}

/// Where a value came from, for the lines that refuse it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct From {
    pub flag: &'static str,
    /// The variable, when the value came from it.
    pub var: Option<&'static str>,
}

impl From {
    /// `--stop-command: PROBLEM (from DRAINIT_STOP_COMMAND)`.
    pub fn refuse(&self, problem: impl std::fmt::Display) -> Error {
        let origin = self
            .var
            .map(|var| format!(" (from {var})"))
            .unwrap_or_default();
        Error::Usage(format!("{}: {problem}{origin}", self.flag))
    }
}

/// A command of a drain action: its words, and where it was given.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Command {
    pub argv: Vec<OsString>,
    pub from: From,
}

impl Command {
    /// Splits `text` into words (see [`split`]); the refusal names the option
    /// (and the variable, if the text came from one).
    pub fn parse(text: &OsStr, from: From) -> Result<Command, Error> {
        let argv = split(text.as_bytes()).map_err(|e| from.refuse(e))?;
        Ok(Command { argv, from })
    }

    /// The command as one readable line, quoted where a word needs it.
    pub fn shown(&self) -> String {
        self.argv
            .iter()
            .map(|word| quoted(word.as_bytes()))
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// At start: the program must be there and executable, as an `execvp`
    /// with drainit's `PATH` would find it. Not found or not executable:
    /// drainit's error (125), naming the option.
    pub fn check(&self) -> Result<(), Error> {
        let Some(program) = self.argv.first() else {
            return Err(self.from.refuse("the command is empty"));
        };
        let shown = Escaped(program.as_bytes());
        if program.as_bytes().contains(&b'/') {
            let path = Path::new(program);
            return match executable(path) {
                Ok(()) => Ok(()),
                Err(why) => Err(self.from.refuse(format!("{shown}: {why}"))),
            };
        }
        let search = std::env::var_os("PATH")
            .map_or_else(|| crate::sys::DEFAULT_PATH.to_vec(), OsString::into_vec);
        let mut denied = None;
        for dir in search.split(|b| *b == b':') {
            let path = Path::new(OsStr::from_bytes(dir)).join(program);
            match executable(&path) {
                Ok(()) => return Ok(()),
                Err(Why::NotExecutable) => denied = denied.or(Some(path)),
                Err(Why::Missing | Why::NotAFile) => {}
            }
        }
        Err(self.from.refuse(match denied {
            Some(path) => format!("{} is not executable", crate::text::path(&path)),
            None => format!("command '{shown}' not found in PATH ({})", Escaped(&search)),
        }))
    }
}

/// Why a path cannot run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Why {
    Missing,
    NotAFile,
    NotExecutable,
}

impl std::fmt::Display for Why {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Why::Missing => "no such file",
            Why::NotAFile => "not a file",
            Why::NotExecutable => "not executable",
        })
    }
}

/// Whether `path` is a file drainit may execute.
fn executable(path: &Path) -> Result<(), Why> {
    let meta = std::fs::metadata(path).map_err(|_| Why::Missing)?;
    if !meta.is_file() {
        return Err(Why::NotAFile);
    }
    if crate::sys::may_execute(path) {
        Ok(())
    } else {
        Err(Why::NotExecutable)
    }
}

/// Splits a command into words, once, as a POSIX shell splits words but with
/// no expansion: blanks (space, tab, newline) separate words; `'...'` keeps
/// everything in it as it is; `"..."` too, but for `\"`, `\\`, `\$` and
/// `` \` ``; a backslash outside quotes keeps the next byte as it is. Quoted
/// parts and the rest of a word join up (`a'b c'` is one word, `ab c`), and
/// `''` is an empty word. Nothing else is special: `$HOME`, `*`, `~`, `;`,
/// `|` and `>` are plain characters (a shell runs only if the command names
/// one: `sh -c '...'`).
pub fn split(text: &[u8]) -> Result<Vec<OsString>, String> {
    #[derive(Clone, Copy, PartialEq, Eq)]
    enum In {
        Blank,
        Word,
        Single,
        Double,
    }
    let mut words = Vec::new();
    let mut word = Vec::new();
    let mut state = In::Blank;
    let mut bytes = text.iter().copied();
    while let Some(b) = bytes.next() {
        match (state, b) {
            (In::Blank | In::Word, b' ' | b'\t' | b'\n') => {
                if state == In::Word {
                    words.push(OsString::from_vec(std::mem::take(&mut word)));
                }
                state = In::Blank;
            }
            (In::Blank | In::Word, b'\'') => state = In::Single,
            (In::Blank | In::Word, b'"') => state = In::Double,
            (In::Blank | In::Word, b'\\') => {
                let next = bytes.next().ok_or(
                    "the command ends with a lone backslash (quote it: '\\\\' or \"\\\\\")",
                )?;
                // As in a shell, a backslash before a newline joins the lines.
                if next != b'\n' {
                    word.push(next);
                }
                state = In::Word;
            }
            (In::Blank | In::Word, b) => {
                word.push(b);
                state = In::Word;
            }
            (In::Single, b'\'') | (In::Double, b'"') => state = In::Word,
            (In::Double, b'\\') => match bytes.next() {
                Some(next @ (b'"' | b'\\' | b'$' | b'`')) => word.push(next),
                Some(b'\n') => {}
                Some(next) => word.extend_from_slice(&[b'\\', next]),
                None => break,
            },
            (In::Single | In::Double, b) => word.push(b),
        }
    }
    match state {
        In::Single => return Err(unbalanced('\'')),
        In::Double => return Err(unbalanced('"')),
        In::Word => words.push(OsString::from_vec(word)),
        In::Blank => {}
    }
    if words.is_empty() {
        return Err("the command is empty".to_string());
    }
    Ok(words)
}

fn unbalanced(quote: char) -> String {
    format!(
        "unbalanced {quote} (the command is split into words as a shell would, without expansion: quotes must pair up)"
    )
}

/// A word as the command line would take it back: as it is when it has
/// nothing special, else in single quotes; control bytes escaped.
fn quoted(word: &[u8]) -> String {
    let plain = !word.is_empty()
        && word
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=@%+,".contains(b) || !b.is_ascii());
    if plain {
        return Escaped(word).to_string();
    }
    let mut out = String::from("'");
    for (i, part) in word.split(|b| *b == b'\'').enumerate() {
        if i > 0 {
            out.push_str("'\\''");
        }
        out.push_str(&Escaped(part).to_string());
    }
    out.push('\'');
    out
}

/// Lines of an action's output shown a second; more are dropped and counted.
pub const LINES_PER_SECOND: usize = 50;
/// Bytes of an action's output read a second; past them, its pipe waits.
const BYTES_PER_SECOND: usize = 64 * 1024;
/// A longer line is shown cut, with "...".
const MAX_LINE: usize = 1024;
const SECOND: Duration = Duration::from_secs(1);

/// The drain actions while drainit runs: those that run, and their bounds.
/// All times are drainit's clock (the supervisor's `now`).
pub struct Runner<'a> {
    actions: &'a Actions,
    inherited: Inherited,
    running: Vec<Running>,
    /// When what still runs gets SIGKILL, once a drain has started.
    kill_at: Option<Duration>,
    /// When the drain started.
    drain_start: Duration,
    /// Why the drain started (`DRAINIT_REASON`).
    reason: Option<Signal>,
    /// The stop command was started (in place of the stop signal).
    stop_ran: bool,
}

/// A command action that runs (its process not reaped yet).
struct Running {
    name: &'static str,
    pid: i32,
    started: Duration,
    output: Option<Output>,
    /// Why drainit SIGKILLed its group, if it did: its end is then no failure.
    killed: Option<&'static str>,
    /// The stop command: the stop signal to send if it fails.
    fallback: Option<Signal>,
}

/// How an action's end concerns the supervisor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reaped {
    /// One of the actions; nothing to do.
    Action,
    /// The stop command failed: send this stop signal to the app after all.
    StopFailed(Signal),
}

impl<'a> Runner<'a> {
    pub fn new(actions: &'a Actions, inherited: Inherited) -> Runner<'a> {
        Runner {
            actions,
            inherited,
            running: Vec::new(),
            kill_at: None,
            drain_start: Duration::ZERO,
            reason: None,
            stop_ran: false,
        }
    }

    /// Whether an action runs (then the loop reads its pipe and keeps its time).
    pub fn active(&self) -> bool {
        !self.running.is_empty()
    }

    /// A drain started at `now`, by `reason`; the kill deadline is `kill_after`
    /// from now. Starts `--on-drain` and `--on-drain-post`.
    pub fn drain_started(
        &mut self,
        reason: Signal,
        now: Duration,
        kill_after: Option<Duration>,
        app_pid: i32,
    ) {
        self.drain_start = now;
        self.reason = Some(reason);
        self.kill_at = kill_at(kill_after).map(|k| now.saturating_add(k));
        if let Some(command) = &self.actions.on_drain
            && let Err(e) = self.spawn("on-drain", command, now, app_pid, None)
        {
            warn!(
                "{}on-drain: cannot run {}: {e}; the drain goes on",
                self.stamp(now),
                command.shown()
            );
        }
        if let Some(url) = &self.actions.post {
            post(
                url.clone(),
                post_timeout(kill_after, Duration::ZERO),
                self.stamp(now),
            );
        }
    }

    /// Runs the stop command instead of sending `signal`; `false` if there is
    /// none or it cannot run (then the caller sends `signal`).
    pub fn stop(&mut self, signal: Signal, now: Duration, app_pid: i32) -> bool {
        let Some(command) = &self.actions.stop_command else {
            return false;
        };
        if self.kill_at.is_some_and(|k| now >= k) {
            // The delay ends past the actions' SIGKILL: no time for a command.
            warn!(
                "{}stop command: no time left before the kill deadline; sending {signal} instead",
                self.stamp(now)
            );
            return false;
        }
        match self.spawn("stop command", command, now, app_pid, Some(signal)) {
            Ok(pid) => {
                self.stop_ran = true;
                info!(
                    "{}running the stop command {} (pid {pid}) instead of sending {signal}",
                    self.stamp(now),
                    command.shown()
                );
                true
            }
            Err(e) => {
                warn!(
                    "{}stop command: cannot run {}: {e}; sending {signal} instead",
                    self.stamp(now),
                    command.shown()
                );
                false
            }
        }
    }

    /// Whether the stop command was started in place of the stop signal.
    pub fn stop_command_ran(&self) -> bool {
        self.stop_ran
    }

    fn stamp(&self, now: Duration) -> String {
        format!("{}: ", since(now.saturating_sub(self.drain_start)))
    }

    fn spawn(
        &mut self,
        name: &'static str,
        command: &Command,
        now: Duration,
        app_pid: i32,
        fallback: Option<Signal>,
    ) -> Result<i32, String> {
        let reason = self.reason.map(|r| r.to_string()).unwrap_or_default();
        let mut vars = vec![
            ("DRAINIT_REASON", reason),
            ("DRAINIT_APP_PID", app_pid.to_string()),
        ];
        if let Some(k) = self.kill_at {
            let ms = k.saturating_sub(now).as_millis();
            vars.push(("DRAINIT_DEADLINE_MS", ms.to_string()));
        }
        let mut env: Vec<OsString> = std::env::vars_os()
            .filter(|(n, _)| !vars.iter().any(|(v, _)| v.as_bytes() == n.as_bytes()))
            .map(|(n, v)| {
                let mut entry = n;
                entry.push("=");
                entry.push(v);
                entry
            })
            .collect();
        env.extend(vars.iter().map(|(n, v)| OsString::from(format!("{n}={v}"))));
        let reason = |e: io::Error| os_reason(&e);
        let mut program = Program::new(&command.argv).map_err(reason)?;
        program.set_env(&env).map_err(reason)?;
        let (read_end, write_end) = sys::output_pipe().map_err(reason)?;
        // Not the app's stdin (a terminal, say): nothing to read.
        let null = dev_null();
        program.set_stdio(null.as_ref().map(File::as_raw_fd), write_end.as_raw_fd());
        let setup = ChildSetup {
            own_group: true,
            terminal: false,
            inherited: self.inherited,
        };
        let pid = sys::start(&mut program, setup).map_err(|e| match e {
            StartError::Exec(e) | StartError::Shell(e)
                if e.raw_os_error() == Some(libc::ENOENT) =>
            {
                "command not found".to_string()
            }
            StartError::Clone(e)
            | StartError::Group(e)
            | StartError::Stdio(e)
            | StartError::Exec(e)
            | StartError::Shell(e) => os_reason(&e),
        })?;
        drop(write_end);
        debug!("{name}: started {} as pid {pid}", command.shown());
        self.running.push(Running {
            name,
            pid,
            started: now,
            output: Some(Output::new(File::from(read_end), now)),
            killed: None,
            fallback,
        });
        Ok(pid)
    }

    /// The pipes to wait on (not those paused for the rest of their second).
    pub fn fds(&self) -> Vec<std::ffi::c_int> {
        self.running
            .iter()
            .filter_map(|r| r.output.as_ref())
            .filter(|o| o.paused_until.is_none())
            .map(|o| o.file.as_raw_fd())
            .collect()
    }

    /// When the loop must wake for the actions: their SIGKILL, or the end of
    /// a paused pipe's second.
    pub fn next_deadline(&self) -> Option<Duration> {
        let kill = self
            .running
            .iter()
            .any(|r| r.killed.is_none())
            .then_some(self.kill_at)
            .flatten();
        let paused = self
            .running
            .iter()
            .filter_map(|r| r.output.as_ref()?.paused_until)
            .min();
        [kill, paused].into_iter().flatten().min()
    }

    /// Each wake while actions run: their output, and their deadline.
    pub fn service(&mut self, now: Duration) {
        for r in &mut self.running {
            if let Some(output) = &mut r.output
                && !output.read(r.name, now)
            {
                r.output = None;
            }
        }
        if self.kill_at.is_some_and(|k| now >= k) {
            let stamp = self.stamp(now);
            self.kill_all("still running before the kill deadline", &stamp, true);
        }
    }

    /// The app has exited: what still runs of the actions ends now.
    pub fn app_exited(&mut self) {
        self.kill_all("the app has exited", "", false);
    }

    /// SIGKILL to the group of each action that still runs (once each).
    fn kill_all(&mut self, why: &'static str, stamp: &str, warn: bool) {
        for r in self.running.iter_mut().filter(|r| r.killed.is_none()) {
            r.killed = Some(why);
            if let Err(e) = sys::send(Target::Group(r.pid), libc::SIGKILL) {
                warn!(
                    "{}: cannot SIGKILL its process group ({}): {}",
                    r.name,
                    r.pid,
                    crate::error::Reason(&e)
                );
            }
            if warn {
                warn!(
                    "{stamp}{}: {why}: SIGKILL to its process group ({})",
                    r.name, r.pid
                );
            } else {
                info!(
                    "{}: {why}: SIGKILL to its process group ({})",
                    r.name, r.pid
                );
            }
        }
    }

    /// Drainit is about to exit: nothing of the actions may outlive it.
    pub fn end(&mut self) {
        self.kill_all("drainit exits", "", false);
    }

    /// A child was reaped: `Some` if it was an action (then its end is logged,
    /// what it left in its group is killed and its output is read to the end).
    pub fn reaped(&mut self, pid: i32, status: Status, now: Duration) -> Option<Reaped> {
        let i = self.running.iter().position(|r| r.pid == pid)?;
        let mut r = self.running.swap_remove(i);
        // Its group outlives it only by what it left behind: never the drain.
        if r.killed.is_none() && sys::anyone_in(Target::Group(pid)) {
            warn!(
                "{}: left processes behind in its process group: SIGKILL to them",
                r.name
            );
            let _ = sys::send(Target::Group(pid), libc::SIGKILL);
        }
        if let Some(mut output) = r.output.take()
            && output.read(r.name, now)
        {
            output.finish(r.name);
        }
        let took = format_duration(now.saturating_sub(r.started));
        let how = match status {
            Status::Exited(code) => format!("exited with code {code}"),
            Status::Signaled(n) => match Signal::new(n) {
                Some(s) => format!("was killed by {s}"),
                None => format!("was killed by signal {n}"),
            },
        };
        let stamp = self.stamp(now);
        if let Some(why) = r.killed {
            debug!("{}: {how} after {took} ({why})", r.name);
            return Some(Reaped::Action);
        }
        if status == Status::Exited(0) {
            info!("{stamp}{}: done after {took}", r.name);
            return Some(Reaped::Action);
        }
        match r.fallback {
            Some(signal) => {
                warn!(
                    "{stamp}{}: {how} after {took}; sending {signal} instead",
                    r.name
                );
                Some(Reaped::StopFailed(signal))
            }
            None => {
                warn!("{stamp}{}: {how} after {took}; the drain goes on", r.name);
                Some(Reaped::Action)
            }
        }
    }
}

/// `/dev/null` to read from, if it is the device: opened without blocking
/// and checked, since the loop must never hang on a FIFO put in its place.
fn dev_null() -> Option<File> {
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open("/dev/null")
        .ok()?;
    file.metadata()
        .ok()?
        .file_type()
        .is_char_device()
        .then_some(file)
}

/// An action's output pipe, read line by line within its budget.
struct Output {
    file: File,
    /// The line read so far (at most `MAX_LINE` bytes).
    line: Vec<u8>,
    /// The line was longer: the rest up to its newline is not shown.
    cut: bool,
    /// When the current second began, and what it has taken so far.
    second: Duration,
    bytes: usize,
    lines: usize,
    /// Lines not shown since the last report.
    dropped: u64,
    /// Out of bytes this second: not read until then.
    paused_until: Option<Duration>,
}

impl Output {
    fn new(file: File, now: Duration) -> Output {
        Output {
            file,
            line: Vec::new(),
            cut: false,
            second: now,
            bytes: 0,
            lines: 0,
            dropped: 0,
            paused_until: None,
        }
    }

    /// Reads what there is, within this second's budget; `false` at the end
    /// of the output (or a read error): then it is closed.
    fn read(&mut self, name: &str, now: Duration) -> bool {
        if now >= self.second.saturating_add(SECOND) {
            self.report(name);
            (self.second, self.bytes, self.lines, self.paused_until) = (now, 0, 0, None);
        }
        if self.paused_until.is_some() {
            return true;
        }
        let mut buf = [0u8; 4096];
        loop {
            let room = BYTES_PER_SECOND.saturating_sub(self.bytes).min(buf.len());
            if room == 0 {
                self.paused_until = Some(self.second.saturating_add(SECOND));
                return true;
            }
            let Some(chunk) = buf.get_mut(..room) else {
                return true;
            };
            match self.file.read(chunk) {
                Ok(0) => {
                    self.finish(name);
                    return false;
                }
                Ok(n) => {
                    self.bytes = self.bytes.saturating_add(n);
                    for &b in chunk.iter().take(n) {
                        self.take(name, b);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return true,
                Err(e) => {
                    debug!(
                        "{name}: cannot read its output: {}",
                        crate::error::Reason(&e)
                    );
                    self.finish(name);
                    return false;
                }
            }
        }
    }

    fn take(&mut self, name: &str, b: u8) {
        if b == b'\n' {
            self.emit(name);
        } else if self.line.len() < MAX_LINE {
            self.line.push(b);
        } else {
            self.cut = true;
        }
    }

    /// Shows the line read so far, unless this second has shown its lines.
    fn emit(&mut self, name: &str) {
        if self.lines < LINES_PER_SECOND {
            self.lines = self.lines.saturating_add(1);
            let more = if self.cut { "..." } else { "" };
            info!("{name}: {}{more}", Escaped(&self.line));
        } else {
            self.dropped = self.dropped.saturating_add(1);
        }
        self.line.clear();
        self.cut = false;
    }

    /// The end of the output: the last line, if it had no newline, and the count of dropped lines.
    fn finish(&mut self, name: &str) {
        if !self.line.is_empty() || self.cut {
            self.emit(name);
        }
        self.report(name);
        if self.paused_until.is_some() {
            debug!("{name}: the rest of its output is not read");
        }
    }

    fn report(&mut self, name: &str) {
        if self.dropped > 0 {
            warn!(
                "{name}: {} lines of output not shown (at most {LINES_PER_SECOND} a second are)",
                self.dropped
            );
            self.dropped = 0;
        }
    }
}

/// `--on-drain-post`: the POST runs in a thread of its own, with a small
/// stack, bounded by `timeout`; it logs its answer. The loop never waits for
/// it, and drainit's exit ends it.
fn post(url: Url, timeout: Duration, stamp: String) {
    info!("{stamp}on-drain-post: POST {url}");
    let spawned = std::thread::Builder::new()
        .name("on-drain-post".into())
        .stack_size(POST_STACK)
        .spawn(move || match crate::health::post(&url, timeout) {
            Ok(code) if (200..300).contains(&code) => {
                info!("on-drain-post: POST {url} answered {code}")
            }
            Ok(code) => warn!("on-drain-post: POST {url} answered {code}; the drain goes on"),
            Err(e) => warn!("on-drain-post: POST {url}: {e}; the drain goes on"),
        });
    if let Err(e) = spawned {
        warn!(
            "on-drain-post: cannot start a thread for it: {}; no POST",
            crate::error::Reason(&e)
        );
    }
}

/// The POST thread's stack: a name lookup and one small request (the health
/// listener's threads take the same).
const POST_STACK: usize = 128 * 1024;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        split(text.as_bytes())
            .unwrap()
            .into_iter()
            .map(|w| w.into_string().unwrap())
            .collect()
    }

    #[test]
    fn actions_are_killed_before_the_kill_deadline() {
        let ms = Duration::from_millis;
        assert_eq!(kill_at(None), None);
        assert_eq!(kill_at(Some(ms(29_000))), Some(ms(28_500)));
        assert_eq!(kill_at(Some(ms(600))), Some(ms(300)));
        assert_eq!(kill_at(Some(ms(1))), Some(ms(1) - ms(1) / 2));
        assert_eq!(kill_at(Some(Duration::ZERO)), Some(Duration::ZERO));
        assert!(kill_at(Some(Duration::MAX)).is_some());
        assert_eq!(post_timeout(None, Duration::ZERO), POST_TIMEOUT);
        assert_eq!(post_timeout(Some(ms(3000)), Duration::ZERO), ms(2500));
        assert_eq!(post_timeout(Some(ms(60_000)), Duration::ZERO), POST_TIMEOUT);
        assert_eq!(post_timeout(Some(ms(3000)), ms(2900)), Duration::ZERO);
    }

    #[test]
    fn splits_words_as_a_shell_would_without_expansion() {
        let cases: &[(&str, &[&str])] = &[
            ("nginx -s quit", &["nginx", "-s", "quit"]),
            ("  a\t b \n c  ", &["a", "b", "c"]),
            (
                "sh -c 'curl -X POST localhost:9901/drain_listeners'",
                &["sh", "-c", "curl -X POST localhost:9901/drain_listeners"],
            ),
            (r#"echo "a \"b\" \\ \$x \n""#, &["echo", r#"a "b" \ $x \n"#]),
            ("a'b c'd", &["ab cd"]),
            ("x '' y", &["x", "", "y"]),
            (r#""""#, &[""]),
            (r"a\ b \'c", &["a b", "'c"]),
            (
                "echo $HOME ~ * ; | >",
                &["echo", "$HOME", "~", "*", ";", "|", ">"],
            ),
            ("a\\\nb", &["ab"]),
            ("'it'\\''s'", &["it's"]),
        ];
        for (text, want) in cases {
            assert_eq!(words(text), *want, "{text:?}");
        }
        // Bytes that are not UTF-8 go through as they are.
        assert_eq!(
            split(b"cat \xff\xfe").unwrap(),
            [
                OsString::from("cat"),
                OsString::from_vec(b"\xff\xfe".to_vec())
            ]
        );
    }

    #[test]
    fn refuses_what_cannot_be_split() {
        for (text, want) in [
            ("", "the command is empty"),
            ("   \t\n", "the command is empty"),
            ("sh -c 'echo", "unbalanced '"),
            ("echo \"a", "unbalanced \""),
            ("echo 'a\"", "unbalanced '"),
            ("echo a\\", "lone backslash"),
        ] {
            let e = split(text.as_bytes()).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
            assert!(!e.contains('\n'), "{text:?}: one line: {e}");
        }
    }

    #[test]
    fn shows_a_command_so_that_it_splits_back_the_same() {
        for text in [
            "nginx -s quit",
            "sh -c 'echo \"hi there\"; exit 3'",
            "x '' y",
            "'it'\\''s'",
            "a\\ b",
        ] {
            let command = Command {
                argv: split(text.as_bytes()).unwrap(),
                from: From {
                    flag: "--on-drain",
                    var: None,
                },
            };
            let shown = command.shown();
            assert_eq!(
                split(shown.as_bytes()).unwrap(),
                command.argv,
                "{text:?} -> {shown}"
            );
        }
        let command = Command {
            argv: vec!["a\nb\x1b".into()],
            from: From {
                flag: "--on-drain",
                var: None,
            },
        };
        assert_eq!(command.shown(), "'a\\nb\\u{1b}'");
    }

    #[test]
    fn a_refusal_names_the_option_and_the_variable() {
        let from = From {
            flag: "--stop-command",
            var: Some("DRAINIT_STOP_COMMAND"),
        };
        let e = Command::parse(OsStr::new("nginx 'quit"), from).unwrap_err();
        assert_eq!(e.exit_code(), 125);
        let e = e.to_string();
        assert!(e.starts_with("--stop-command: unbalanced '"), "{e}");
        assert!(e.ends_with(" (from DRAINIT_STOP_COMMAND)"), "{e}");
    }

    #[test]
    fn checks_that_the_program_is_there_and_executable() {
        let from = From {
            flag: "--on-drain",
            var: None,
        };
        let cmd = |w: &str| Command {
            argv: vec![w.into()],
            from,
        };
        assert!(cmd("sh").check().is_ok());
        assert!(cmd("/bin/sh").check().is_ok());
        let e = cmd("drainit-no-such-program")
            .check()
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("--on-drain: command 'drainit-no-such-program' not found in PATH"),
            "{e}"
        );
        let e = cmd("/no/such/file").check().unwrap_err().to_string();
        assert_eq!(e, "--on-drain: /no/such/file: no such file");
        let e = cmd("/").check().unwrap_err().to_string();
        assert_eq!(e, "--on-drain: /: not a file");
    }
}
