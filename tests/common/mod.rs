//! One fluent helper for running the real drainit binary from outside, as a
//! real PID 1 (`unshare --pid --fork --mount-proc`) or as a plain parent.
//!
//! `DRAINIT_BIN` names the binary under test (the Makefile points it at the
//! static release build); without it, cargo's own build of drainit is used.
//!
//! Timing: a lower bound is measured from a timestamp taken before the action
//! it bounds (`Running::signal` returns one taken just before kill(2)), and
//! nothing waits a fixed time: tests hand-shake through the fixture's ready
//! file and log, or drainit's log.

// Every test binary compiles this module and uses only part of it, so each
// one alone sees some helpers as dead: the allowance is for that. A helper
// that no binary uses is removed: dropping `dead_code` here shows, for each
// binary, what it leaves unused; what every binary reports is dead.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub const SIGHUP: i32 = 1;
pub const SIGINT: i32 = 2;
pub const SIGQUIT: i32 = 3;
pub const SIGKILL: i32 = 9;
pub const SIGUSR1: i32 = 10;
pub const SIGUSR2: i32 = 12;
pub const SIGTERM: i32 = 15;
pub const SIGCONT: i32 = 18;
pub const SIGSTOP: i32 = 19;
pub const SIGWINCH: i32 = 28;

/// Every variable drainit reads.
pub const VARIABLES: [&str; 22] = [
    "DRAINIT_NO_GROUP",
    "DRAINIT_GRACE",
    "DRAINIT_DRAIN_FILE",
    "DRAINIT_DRAIN_DELAY",
    "DRAINIT_STOP_SIGNAL",
    "DRAINIT_KILL_AFTER",
    "DRAINIT_STOP_TIMEOUT",
    "DRAINIT_DRAIN_ON",
    "DRAINIT_DRAIN_QUIET",
    "DRAINIT_DRAIN_MIN",
    "DRAINIT_DRAIN_IGNORE_FROM",
    "DRAINIT_READY_FAIL_AFTER",
    "DRAINIT_HEALTH_LISTEN",
    "DRAINIT_ON_DRAIN",
    "DRAINIT_STOP_COMMAND",
    "DRAINIT_ON_DRAIN_POST",
    "DRAINIT_SUCCESS_EXIT",
    "DRAINIT_URL",
    "DRAINIT_TIMEOUT",
    "DRAINIT_VERBOSE",
    "DRAINIT_QUIET",
    "DRAINIT_LOG",
];

/// The binary under test.
pub fn bin() -> PathBuf {
    std::env::var_os("DRAINIT_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_drainit")))
}

/// The kernel's name for the binary under test (its file name, cut to 15 bytes).
pub fn bin_comm() -> String {
    let name = bin().file_name().unwrap().to_string_lossy().into_owned();
    name.chars().take(15).collect()
}

/// The fixture app (tests/fixtures/app.py).
pub fn app() -> String {
    format!("{}/tests/fixtures/app.py", env!("CARGO_MANIFEST_DIR"))
}

/// How drainit is run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// PID 1 of a new PID namespace, as in a container.
    Pid1,
    /// A plain parent (drainit makes itself a child subreaper).
    Parent,
}

pub const BOTH: [Mode; 2] = [Mode::Pid1, Mode::Parent];

/// Whether PID-1 tests can run here (root and unshare). Without them the test
/// fails under CI=true, and is skipped loudly elsewhere.
pub fn can_run(mode: Mode) -> bool {
    if mode == Mode::Parent {
        return true;
    }
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    let unshare = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if root && unshare {
        return true;
    }
    let why = format!(
        "cannot run as PID 1 here (root: {root}, unshare --pid --fork --mount-proc works: {unshare})"
    );
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{why}; CI=true requires it");
    }
    eprintln!("SKIPPED: {why}");
    false
}

/// A fresh directory for one test, removed at the end.
pub struct Scratch(PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "drainit-test-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    pub fn str(&self, name: &str) -> String {
        self.path(name).to_string_lossy().into_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A drainit command line to run.
pub struct Drainit {
    mode: Mode,
    program: PathBuf,
    prefix: Vec<OsString>,
    args: Vec<OsString>,
    env: Vec<(String, String)>,
    stdin: Option<Vec<u8>>,
    /// Where drainit's stderr goes instead of the test's pipe.
    stderr: Option<Stdio>,
}

impl Drainit {
    pub fn new(mode: Mode) -> Drainit {
        Drainit {
            mode,
            program: bin(),
            prefix: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            stdin: None,
            stderr: None,
        }
    }

    /// drainit's stderr goes to `stderr` (the test then sees none of it).
    pub fn stderr_to(mut self, stderr: Stdio) -> Drainit {
        self.stderr = Some(stderr);
        self
    }

    /// Runs `launcher... drainit args` instead of `drainit args`, e.g. to
    /// start drainit with a given signal mask.
    pub fn through<S: AsRef<OsStr>>(mut self, launcher: &[S]) -> Drainit {
        self.prefix = launcher.iter().map(|s| s.as_ref().to_os_string()).collect();
        self
    }

    pub fn arg<S: AsRef<OsStr>>(mut self, arg: S) -> Drainit {
        self.args.push(arg.as_ref().to_os_string());
        self
    }

    pub fn args<S: AsRef<OsStr>>(mut self, args: &[S]) -> Drainit {
        self.args
            .extend(args.iter().map(|a| a.as_ref().to_os_string()));
        self
    }

    /// `-- python3 app.py ARGS...`
    pub fn app(self, app_args: &[&str]) -> Drainit {
        self.arg("--").arg("python3").arg(app()).args(app_args)
    }

    pub fn env(mut self, key: &str, value: &str) -> Drainit {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Each (`--option`, value) as a flag or, `by_env`, as its DRAINIT_OPTION variable.
    pub fn options(mut self, options: &[(&str, &str)], by_env: bool) -> Drainit {
        for (option, value) in options {
            if by_env {
                let name = option
                    .trim_start_matches("--")
                    .replace('-', "_")
                    .to_uppercase();
                self = self.env(&format!("DRAINIT_{name}"), value);
            } else {
                self = self.arg(option).arg(value);
            }
        }
        self
    }

    pub fn stdin(mut self, bytes: &[u8]) -> Drainit {
        self.stdin = Some(bytes.to_vec());
        self
    }

    pub fn spawn(self) -> Running {
        let mut command = match self.mode {
            Mode::Pid1 => {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc"]);
                c.args(&self.prefix);
                c.arg(&self.program);
                c
            }
            Mode::Parent => match self.prefix.split_first() {
                Some((first, rest)) => {
                    let mut c = Command::new(first);
                    c.args(rest).arg(&self.program);
                    c
                }
                None => Command::new(&self.program),
            },
        };
        command.args(&self.args);
        // Only what the test sets reaches drainit.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("DRAINIT_") {
                command.env_remove(key);
            }
        }
        for (key, value) in &self.env {
            command.env(key, value);
        }
        command.stdin(if self.stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let own_stderr = self.stderr.is_none();
        command
            .stdout(Stdio::piped())
            .stderr(self.stderr.unwrap_or_else(Stdio::piped));
        let started = Instant::now();
        let mut child = command.spawn().expect("spawn drainit");
        if let Some(bytes) = self.stdin {
            let mut stdin = child.stdin.take().unwrap();
            std::thread::spawn(move || {
                let _ = stdin.write_all(&bytes);
            });
        }
        let stdout = Some(collect(child.stdout.take().unwrap()));
        let stderr = own_stderr.then(|| collect(child.stderr.take().unwrap()));
        Running {
            mode: self.mode,
            child,
            started,
            stdout,
            stderr,
            drainit: None,
        }
    }

    /// Runs to the end (at most `timeout`).
    pub fn run(self, timeout: Duration) -> Outcome {
        self.spawn().wait(timeout)
    }
}

type Sink = (Arc<Mutex<Vec<u8>>>, JoinHandle<()>);

fn collect<R: Read + Send + 'static>(mut reader: R) -> Sink {
    let buf = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&buf);
    let handle = std::thread::spawn(move || {
        let mut chunk = [0u8; 4096];
        while let Ok(n) = reader.read(&mut chunk) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&chunk[..n]);
        }
    });
    (buf, handle)
}

/// How a run ended.
#[derive(Debug)]
pub struct Outcome {
    /// The exit code, or `None` if killed by a signal.
    pub code: Option<i32>,
    /// The signal that killed it, if one did.
    pub signal: Option<i32>,
    pub stdout: Vec<u8>,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Outcome {
    pub fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }

    /// Asserts that drainit exited `code` and that its stderr, trailing
    /// newline aside, is `line`; `what` names the run in a failure.
    pub fn assert_error(&self, code: i32, line: &str, what: &str) {
        assert_eq!(self.code, Some(code), "{what}: {}", self.stderr);
        assert_eq!(self.stderr.trim_end(), line, "{what}");
    }
}

pub struct Running {
    mode: Mode,
    child: Child,
    started: Instant,
    stdout: Option<Sink>,
    stderr: Option<Sink>,
    drainit: Option<i32>,
}

impl Running {
    /// drainit's pid as seen from the test (the host).
    pub fn pid(&mut self) -> i32 {
        if let Some(pid) = self.drainit {
            return pid;
        }
        let me = self.child.id() as i32;
        let pid = match self.mode {
            Mode::Parent => me,
            Mode::Pid1 => wait_until(Duration::from_secs(10), || {
                processes()
                    .into_iter()
                    .find(|p| p.ppid == me && p.name == bin_comm())
                    .map(|p| p.pid)
            })
            .unwrap_or_else(|| {
                panic!(
                    "drainit never started under unshare; stderr: {}",
                    self.stderr()
                )
            }),
        };
        self.drainit = Some(pid);
        pid
    }

    /// The host pid of drainit's child running the app.
    pub fn app_pid(&mut self) -> i32 {
        let drainit = self.pid();
        wait_until(Duration::from_secs(10), || {
            children_of(drainit).into_iter().min()
        })
        .unwrap_or_else(|| panic!("drainit has no child; stderr: {}", self.stderr()))
    }

    /// Sends `signal` to drainit with kill(2). Returns the time since start
    /// taken just before sending: the lower bound of anything it causes.
    pub fn signal(&mut self, signal: i32) -> Duration {
        let pid = self.pid();
        let sent = self.elapsed();
        kill(pid, signal);
        sent
    }

    pub fn stderr(&self) -> String {
        let Some(sink) = &self.stderr else {
            return String::new();
        };
        String::from_utf8_lossy(&sink.0.lock().unwrap()).into_owned()
    }

    /// Waits until drainit has logged `times` lines containing `text`.
    pub fn wait_for_log(&self, text: &str, times: usize, timeout: Duration) {
        let count = || self.stderr().lines().filter(|l| l.contains(text)).count();
        if wait_until(timeout, || (count() >= times).then_some(())).is_none() {
            panic!(
                "not {times} log lines with '{text}' within {timeout:?}; stderr:\n{}",
                self.stderr()
            );
        }
    }

    /// Whether drainit is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Time since drainit was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Waits for drainit to exit, at most `timeout`; kills it and fails if it does not.
    pub fn wait(mut self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() >= deadline {
                self.kill_all();
                panic!(
                    "drainit did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        let elapsed = self.started.elapsed();
        // Leftovers may hold the pipes open; take what arrived so far after a moment.
        let join = |sink: Sink| {
            let until = Instant::now() + Duration::from_secs(2);
            while !sink.1.is_finished() && Instant::now() < until {
                std::thread::sleep(Duration::from_millis(5));
            }
            sink.0.lock().unwrap().clone()
        };
        Outcome {
            code: status.code(),
            signal: std::os::unix::process::ExitStatusExt::signal(&status),
            stdout: join(self.stdout.take().unwrap()),
            stderr: String::from_utf8_lossy(&self.stderr.take().map(join).unwrap_or_default())
                .into_owned(),
            elapsed,
        }
    }
}

impl Running {
    /// SIGKILLs drainit (or unshare), the app and whatever they started, and
    /// reaps what the test started.
    fn kill_all(&mut self) {
        let root = self.child.id() as i32;
        for pid in descendants(root).into_iter().chain([root]) {
            kill(pid, SIGKILL);
        }
        let _ = self.child.wait();
    }
}

impl Drop for Running {
    /// A test that failed half-way leaves nothing running.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.kill_all();
        }
    }
}

/// Calls `f` until it returns `Some`, at most `timeout`.
pub fn wait_until<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits until `path` exists, at most `timeout`.
pub fn wait_for_file(path: &Path, timeout: Duration) -> bool {
    wait_until(timeout, || path.exists().then_some(())).is_some()
}

/// Lines of a file (empty if it does not exist).
pub fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Waits until the file has a line equal to `line`; panics after `timeout`.
pub fn wait_for_line(path: &Path, line: &str, timeout: Duration) {
    if wait_until(timeout, || {
        lines(path).iter().any(|l| l == line).then_some(())
    })
    .is_none()
    {
        panic!(
            "no line '{line}' in {} within {timeout:?}; it has: {:?}",
            path.display(),
            lines(path)
        );
    }
}

/// kill(2), at once (no /bin/kill to fork first); a process already gone is
/// not an error. Only ever one process: never 0 or a negative pid (a group, or
/// every process there is).
#[allow(unsafe_code)]
pub fn kill(pid: i32, signal: i32) {
    assert!(
        pid > 0,
        "kill({pid}, {signal}) would signal more than one process"
    );
    // SAFETY: kill(2) takes two integers and touches no memory of ours.
    let _ = unsafe { libc::kill(pid, signal) };
}

/// Fields of /proc/PID/stat after the command name: state is [0], ppid [1], pgrp [2].
pub fn stat(pid: i32) -> Option<Vec<String>> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &text[text.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

pub fn state(pid: i32) -> Option<char> {
    stat(pid)?.first()?.chars().next()
}

pub fn pgrp(pid: i32) -> Option<i32> {
    stat(pid)?.get(2)?.parse().ok()
}

pub fn comm(pid: i32) -> Option<String> {
    Some(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()?
            .trim()
            .to_string(),
    )
}

/// A line of /proc/PID/status, e.g. `status_field(p, "SigBlk")`.
pub fn status_field(pid: i32, key: &str) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(&format!("{key}:"))
            .map(|v| v.trim().to_string())
    })
}

/// One process, as its /proc/PID/status shows it.
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    /// The command name (comm).
    pub name: String,
    /// Its pid in its own (innermost) PID namespace: the last of NSpid.
    pub inner: i32,
}

/// Every process (zombies included), in one pass over /proc: each
/// /proc/PID/status is read once. A process that exits meanwhile is left out.
pub fn processes() -> Vec<Proc> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| {
            let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
            let field = |key: &str| {
                text.lines()
                    .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                    .map(str::trim)
            };
            Some(Proc {
                pid,
                ppid: field("PPid")?.parse().ok()?,
                name: field("Name")?.to_string(),
                inner: field("NSpid")?.split_whitespace().last()?.parse().ok()?,
            })
        })
        .collect()
}

/// Every process whose parent is `pid` (zombies included).
pub fn children_of(pid: i32) -> BTreeSet<i32> {
    processes()
        .into_iter()
        .filter(|p| p.ppid == pid)
        .map(|p| p.pid)
        .collect()
}

/// Every descendant of `pid` among `procs`.
fn descendants_in(procs: &[Proc], pid: i32) -> BTreeSet<i32> {
    let mut children: BTreeMap<i32, Vec<i32>> = BTreeMap::new();
    for p in procs {
        children.entry(p.ppid).or_default().push(p.pid);
    }
    let mut out = BTreeSet::new();
    let mut todo = vec![pid];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).into_iter().flatten() {
            if out.insert(c) {
                todo.push(c);
            }
        }
    }
    out
}

/// Every descendant of `pid`, from one pass over /proc.
pub fn descendants(pid: i32) -> BTreeSet<i32> {
    descendants_in(&processes(), pid)
}

/// Context switches of every thread of `pid`, voluntary or not.
pub fn context_switches(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
        .map(|task| {
            let status = std::fs::read_to_string(task.path().join("status")).unwrap_or_default();
            status
                .lines()
                .filter(|l| l.contains("ctxt_switches"))
                .filter_map(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
                .sum::<u64>()
        })
        .sum()
}

/// The descriptors a process holds: (fd, what it points to), sorted.
pub fn open_fds(pid: i32) -> Vec<(String, String)> {
    let mut out: Vec<_> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let target = std::fs::read_link(e.path())
                .map(|t| t.to_string_lossy().into_owned())
                .unwrap_or_default();
            (e.file_name().to_string_lossy().into_owned(), target)
        })
        .collect();
    out.sort();
    out
}

/// Whether a process exists and is not a zombie.
pub fn running(pid: i32) -> bool {
    matches!(state(pid), Some(s) if s != 'Z' && s != 'X')
}

/// Runs drainit as a plain parent and returns its one refusal line; fails
/// unless it exited 125 with exactly one line on stderr and nothing on stdout.
pub fn refusal(d: Drainit, what: &str) -> String {
    let out = d.run(secs(10.0));
    assert_eq!(out.code, Some(125), "{what}: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{what}: {:?}", out.stderr);
    assert!(out.stdout.is_empty(), "{what}: nothing on stdout");
    out.stderr.trim_end_matches('\n').to_string()
}

pub fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(s)
}

impl Running {
    /// Waits for the fixture's ready file and returns its host pid (the file
    /// holds the pid as seen inside drainit's namespace).
    pub fn ready(&mut self, path: &Path) -> i32 {
        if !wait_for_file(path, Duration::from_secs(15)) {
            panic!(
                "{} never appeared; stderr:\n{}",
                path.display(),
                self.stderr()
            );
        }
        let inner: i32 = std::fs::read_to_string(path)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        if self.mode == Mode::Parent {
            return inner;
        }
        let drainit = self.pid();
        // Retried: a walk of /proc can miss a process being reparented to drainit.
        wait_until(Duration::from_secs(5), || {
            let procs = processes();
            let under = descendants_in(&procs, drainit);
            procs
                .iter()
                .find(|p| p.inner == inner && under.contains(&p.pid))
                .map(|p| p.pid)
        })
        .unwrap_or_else(|| panic!("no process with inner pid {inner} under drainit"))
    }
}

/// Lines of the fixture's log, without the SIGCONT that follows every stop
/// signal drainit sends (whether the fixture logs it depends on timing).
pub fn log_lines(path: &Path) -> Vec<String> {
    lines(path).into_iter().filter(|l| l != "SIGCONT").collect()
}
