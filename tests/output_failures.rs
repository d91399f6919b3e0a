//! drainit's own output going nowhere: a full (`/dev/full`), closed, or
//! dead (a pipe whose reader has gone) stdout or stderr never kills it.
//! `--help`, `--version` and `--explain` then exit 125, the health check still
//! answers by its exit code, a refusal is still 125, and in run mode drainit
//! keeps supervising, exits with the app's code and, once a log write has
//! failed with EPIPE, writes no more (a write would raise SIGPIPE again, which
//! would be logged again: a loop at 100 % CPU).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Where drainit's stdout or stderr goes.
#[derive(Clone, Copy, Debug)]
enum Sink {
    /// `/dev/full`: every write fails with ENOSPC.
    Full,
    /// A pipe whose read end is closed: every write fails with EPIPE (or raises SIGPIPE).
    DeadPipe,
    /// The descriptor is not open at all.
    Closed,
}

/// Arguments, and DRAINIT_* variables, for one run.
type Args<'a> = &'a [&'a str];
type Vars<'a> = &'a [(&'a str, &'a str)];

const SINKS: [Sink; 3] = [Sink::Full, Sink::DeadPipe, Sink::Closed];

/// Which of drainit's descriptors a sink replaces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdout,
    Stderr,
}

/// drainit with `args` and only `env` of the DRAINIT_* variables, its
/// `stream` going to `sink` (the other one to /dev/null).
fn start(mode: Mode, args: &[&str], env: &[(&str, &str)], stream: Stream, sink: Sink) -> Started {
    // A closed descriptor cannot be handed over by std: a shell closes it and
    // execs drainit (or unshare) in its place.
    let close = match (sink, stream) {
        (Sink::Closed, Stream::Stdout) => "exec \"$@\" >&-",
        (Sink::Closed, Stream::Stderr) => "exec \"$@\" 2>&-",
        _ => "exec \"$@\"",
    };
    let mut command = Command::new("sh");
    command.args(["-c", close, "sh"]);
    if mode == Mode::Pid1 {
        command.args(["unshare", "--pid", "--fork", "--mount-proc"]);
    }
    command.arg(bin()).args(args);
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DRAINIT_") {
            command.env_remove(key);
        }
    }
    for (key, value) in env {
        command.env(key, value);
    }
    let target = match sink {
        Sink::Full => Stdio::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/full")
                .unwrap(),
        ),
        Sink::DeadPipe => {
            // The write end of a pipe whose only reader, `true`, has exited.
            let mut reader = Command::new("true").stdin(Stdio::piped()).spawn().unwrap();
            let writer = reader.stdin.take().unwrap();
            reader.wait().unwrap();
            Stdio::from(writer)
        }
        Sink::Closed => Stdio::null(),
    };
    command.stdin(Stdio::null());
    match stream {
        Stream::Stdout => command.stdout(target).stderr(Stdio::null()),
        Stream::Stderr => command.stdout(Stdio::null()).stderr(target),
    };
    Started(command.spawn().expect("start drainit"))
}

/// A started drainit; if the test fails half-way, it and everything it
/// started are SIGKILLed, so that nothing is left running.
struct Started(Child);

impl Drop for Started {
    fn drop(&mut self) {
        if !matches!(self.0.try_wait(), Ok(None)) {
            return;
        }
        let root = self.0.id() as i32;
        for pid in descendants(root).into_iter().chain([root]) {
            kill(pid, SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// Waits for drainit at most `timeout`; fails if it does not exit (and the
/// drop kills it).
fn finish(mut started: Started, timeout: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = started.0.try_wait().unwrap() {
            return status;
        }
        if Instant::now() >= deadline {
            panic!("{what}: drainit did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// drainit's exit code; a death by signal (SIGILL from a panic, SIGPIPE) fails the test.
fn code(status: ExitStatus, what: &str) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, signal) => panic!("{what}: drainit was killed by signal {signal:?}"),
    }
}

fn modes() -> Vec<Mode> {
    BOTH.into_iter().filter(|m| can_run(*m)).collect()
}

#[test]
fn help_version_and_explain_exit_125_when_stdout_cannot_take_them() {
    let cases: [&[&str]; 4] = [
        &["--help"],
        &["--version"],
        &["--explain"],
        &["--explain", "--drain-delay", "5s", "--stop-timeout", "30s"],
    ];
    for mode in modes() {
        for args in cases {
            for sink in SINKS {
                let what = format!("{mode:?} {args:?} stdout {sink:?}");
                let child = start(mode, args, &[], Stream::Stdout, sink);
                let status = finish(child, secs(10.0), &what);
                assert_eq!(code(status, &what), 125, "{what}");
            }
            // The same to a live stdout: 0, so the 125 above is the sink's doing.
            let out = Drainit::new(mode).args(args).run(secs(10.0));
            assert_eq!(out.code, Some(0), "{mode:?} {args:?}: {}", out.stderr);
            assert!(!out.stdout.is_empty());
        }
    }
}

#[test]
fn the_health_check_answers_by_its_exit_code_whatever_stdout_is() {
    let dir = Scratch::new("health-output");
    let drain_file = dir.str("draining");
    for mode in modes() {
        for sink in SINKS {
            for (draining, want) in [(false, 0), (true, 1)] {
                if draining {
                    std::fs::write(&drain_file, "signal=SIGTERM\n").unwrap();
                } else {
                    let _ = std::fs::remove_file(&drain_file);
                }
                let what = format!("{mode:?} stdout {sink:?} draining={draining}");
                let child = start(
                    mode,
                    &["--healthcheck", "--drain-file", &drain_file],
                    &[],
                    Stream::Stdout,
                    sink,
                );
                let status = finish(child, secs(10.0), &what);
                assert_eq!(code(status, &what), want, "{what}");
            }
        }
    }
}

#[test]
fn a_refusal_exits_125_whatever_stderr_is() {
    let cases: [(Args, Vars); 4] = [
        (&["--bogus", "true"], &[]),
        (&["--grace", "soon", "true"], &[]),
        (&["true"], &[("DRAINIT_LOG", "loud")]),
        (&["true"], &[("DRAINIT_STOP_SIGNAL", "STOP")]),
    ];
    for mode in modes() {
        for (args, env) in cases {
            for sink in SINKS {
                let what = format!("{mode:?} {args:?} {env:?} stderr {sink:?}");
                let child = start(mode, args, env, Stream::Stderr, sink);
                let status = finish(child, secs(10.0), &what);
                assert_eq!(code(status, &what), 125, "{what}");
            }
        }
    }
}

/// CPU time (user + system, in clock ticks) a process has used so far.
fn cpu_ticks(pid: i32) -> u64 {
    let fields = stat(pid).expect("drainit's /proc/PID/stat");
    let field = |i: usize| fields[i].parse::<u64>().unwrap();
    // After the command name: state is [0], so utime (field 14) is [11], stime [12].
    field(11) + field(12)
}

/// drainit's own host pid: the child itself, or the child of unshare.
fn drainit_pid(mode: Mode, started: &Started) -> i32 {
    let me = started.0.id() as i32;
    if mode == Mode::Parent {
        return me;
    }
    wait_until(secs(10.0), || {
        children_of(me)
            .into_iter()
            .find(|p| comm(*p) == Some(bin_comm()))
    })
    .expect("drainit under unshare")
}

#[test]
fn run_mode_survives_a_dead_or_full_stderr_and_then_uses_no_cpu() {
    let dir = Scratch::new("dead-stderr");
    // The app says it runs, then waits for the test's go-ahead and exits 3.
    let script = "touch \"$1\"; while [ ! -e \"$2\" ]; do sleep 0.05; done; exit 3";
    let logging: [(Args, Vars); 3] = [
        (&["-v"], &[]),
        (&[], &[("DRAINIT_LOG", "debug")]),
        (&[], &[]),
    ];
    for mode in modes() {
        for sink in [Sink::DeadPipe, Sink::Full, Sink::Closed] {
            for (i, (flags, env)) in logging.iter().enumerate() {
                let what = format!("{mode:?} stderr {sink:?} {flags:?} {env:?}");
                let ready = dir.path(&format!("ready-{mode:?}-{sink:?}-{i}"));
                let go = dir.path(&format!("go-{mode:?}-{sink:?}-{i}"));
                let mut args: Vec<&str> = flags.to_vec();
                let (ready_s, go_s) = (ready.to_str().unwrap(), go.to_str().unwrap());
                args.extend(["--", "sh", "-c", script, "sh", ready_s, go_s]);
                let child = start(mode, &args, env, Stream::Stderr, sink);
                let pid = drainit_pid(mode, &child);
                assert!(
                    wait_for_file(Path::new(&ready), secs(15.0)),
                    "{what}: the app never started"
                );
                // drainit has logged (or tried to) that it started the app; with
                // a dead pipe it got EPIPE and the SIGPIPE it raised on itself.
                let before = cpu_ticks(pid);
                let from = Instant::now();
                std::thread::sleep(Duration::from_millis(1200));
                let used = cpu_ticks(pid) - before;
                let window = from.elapsed();
                assert!(running(pid), "{what}: drainit died with its stderr");
                // A spinning drainit uses ~100 ticks a second; an idle one none.
                assert!(
                    used <= 5,
                    "{what}: drainit used {used} ticks of CPU in {window:?} while the app slept"
                );
                std::fs::write(&go, "").unwrap();
                let status = finish(child, secs(15.0), &what);
                assert_eq!(code(status, &what), 3, "{what}: the app's code");
            }
        }
    }
}
