//! drainit stops itself when the app is stopped by a terminal stop signal
//! only as the foreground job of a job-control shell (tests/terminal.rs).
//! Started in a process group of its own by a parent that does no job
//! control (Go's `Setpgid`, supervisord, Python's `process_group=0`, or in a
//! session of its own), it never stops: nobody would ever continue it, and a
//! stopped drainit ignores SIGTERM. The stop signals go to the app as any
//! other, and SIGTERM still ends the app on time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

const SIGTSTP: i32 = 20;
const SIGTTIN: i32 = 21;
const SIGTTOU: i32 = 22;

/// Starts `argv[3:]` (drainit) the way a supervisor would: in a process group
/// of its own (`group`) or a session of its own (`session`), never waiting
/// for it to stop (`wait()`, not WUNTRACED); writes its pid to argv[2] and
/// exits with its code.
const LAUNCHER: &str = r#"
import os, subprocess, sys
shape, pid_file, command = sys.argv[1], sys.argv[2], sys.argv[3:]
if shape == "group":
    p = subprocess.Popen(command, process_group=0)
else:
    p = subprocess.Popen(command, start_new_session=True)
with open(pid_file + ".tmp", "w") as f:
    f.write(str(p.pid))
os.rename(pid_file + ".tmp", pid_file)
sys.exit(p.wait() % 256)
"#;

/// Stops on TSTP, TTIN and TTOU (their default), exits 7 on SIGTERM (taken
/// with sigwait: no race with a handler); one process, no children.
const APP: &str = r#"
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
signal.sigwait({signal.SIGTERM})
os._exit(7)
"#;

/// Polls drainit's state until it exits; true if it was ever seen stopped.
fn watch_for_stops(pid: i32) -> (Arc<AtomicBool>, std::thread::JoinHandle<bool>) {
    let done = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&done);
    let watcher = std::thread::spawn(move || {
        let mut stopped = false;
        while !flag.load(Ordering::Relaxed) {
            match state(pid) {
                Some('T') | Some('t') => stopped = true,
                Some(_) => {}
                None => break,
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        stopped
    });
    (done, watcher)
}

#[test]
fn a_terminal_stop_signal_never_stops_drainit_under_a_parent_without_job_control() {
    // (to whom the signal is sent, the signal)
    let cases = [
        ("the app", SIGTSTP),
        ("drainit", SIGTSTP),
        ("drainit", SIGTTIN),
        ("the app", SIGTTOU),
    ];
    for shape in ["group", "session"] {
        for (whom, signal) in cases {
            let what = format!("{shape}: signal {signal} to {whom}");
            let s = Scratch::new("stop-self");
            let mut r = Drainit::new(Mode::Parent)
                .through(&["python3", "-c", LAUNCHER, shape, &s.str("drainit")])
                .args(&["-v", "--", "python3", "-c", APP, &s.str("ready")])
                .spawn();
            let app = r.ready(&s.path("ready"));
            assert!(wait_for_file(&s.path("drainit"), secs(10.0)), "{what}");
            let drainit: i32 = std::fs::read_to_string(s.path("drainit"))
                .unwrap()
                .parse()
                .unwrap();
            assert_eq!(stat(app).unwrap()[1], drainit.to_string(), "{what}");
            if shape == "group" {
                // A group of its own, in the launcher's session.
                assert_eq!(pgrp(drainit), Some(drainit), "{what}");
            }
            let (done, watcher) = watch_for_stops(drainit);
            kill(if whom == "drainit" { drainit } else { app }, signal);
            // The app stops (and, unless drainit passed the stop on, is
            // continued by drainit); either way drainit has seen it (-v).
            r.wait_for_log("stopped by SIG", 1, secs(10.0));
            let sent = r.signal_pid(drainit, SIGTERM);
            let out = r.wait(secs(20.0));
            done.store(true, Ordering::Relaxed);
            let stopped = watcher.join().unwrap();
            assert!(!stopped, "{what}: drainit stopped itself; {}", out.stderr);
            assert_eq!(out.code, Some(7), "{what}: {}", out.stderr);
            // On time: at once (no drain is configured), with a generous bound.
            assert!(
                out.elapsed - sent < secs(5.0),
                "{what}: took {:?}; {}",
                out.elapsed - sent,
                out.stderr
            );
        }
    }
}

trait SignalPid {
    fn signal_pid(&mut self, pid: i32, signal: i32) -> std::time::Duration;
}

impl SignalPid for Running {
    /// Sends `signal` to `pid` (drainit under a launcher, not the child the
    /// test started); returns the time since start taken just before.
    fn signal_pid(&mut self, pid: i32, signal: i32) -> std::time::Duration {
        let sent = self.elapsed();
        kill(pid, signal);
        sent
    }
}

#[test]
fn with_a_terminal_it_stops_only_as_the_foreground_job() {
    // The launcher runs on a terminal (a developer's, say) and starts drainit
    // in a background group of that terminal: a job-control shell's
    // background job looks the same, but no shell gave drainit the terminal.
    let s = Scratch::new("stop-self-tty");
    let command = format!(
        "python3 -c '{}' group {} {} -v -- python3 -c '{}' {} 2>{}",
        LAUNCHER.replace('\'', "'\\''"),
        s.str("drainit"),
        bin().display(),
        APP.replace('\'', "'\\''"),
        s.str("ready"),
        s.str("err")
    );
    let mut script = std::process::Command::new("script");
    // Only what the test sets reaches drainit.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("DRAINIT_") {
            script.env_remove(key);
        }
    }
    let mut script = script
        .args(["--quiet", "--return", "--command", &command, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("util-linux script");
    let err = || std::fs::read_to_string(s.path("err")).unwrap_or_default();
    assert!(
        wait_for_file(&s.path("ready"), secs(15.0)),
        "the app never got ready: {}",
        err()
    );
    assert!(wait_for_file(&s.path("drainit"), secs(10.0)));
    let app: i32 = std::fs::read_to_string(s.path("ready"))
        .unwrap()
        .parse()
        .unwrap();
    let drainit: i32 = std::fs::read_to_string(s.path("drainit"))
        .unwrap()
        .parse()
        .unwrap();
    // drainit has the terminal as its controlling one (tty_nr, field 7 of
    // stat, is [4] here), and leads a group that is not its foreground.
    let fields = stat(drainit).unwrap();
    assert_ne!(fields[4], "0", "drainit has no controlling terminal");
    assert_ne!(
        fields[5],
        drainit.to_string(),
        "drainit holds the foreground"
    );
    let (done, watcher) = watch_for_stops(drainit);
    kill(app, SIGTSTP);
    let seen = wait_until(secs(10.0), || {
        err().contains("stopped by SIGTSTP").then_some(())
    });
    kill(drainit, SIGTERM);
    let status = wait_until(secs(20.0), || script.try_wait().unwrap());
    done.store(true, Ordering::Relaxed);
    let stopped = watcher.join().unwrap();
    if status.is_none() {
        for pid in descendants(script.id() as i32)
            .into_iter()
            .chain([script.id() as i32])
        {
            kill(pid, SIGKILL);
        }
        let _ = script.wait();
    }
    assert!(seen.is_some(), "drainit never saw the stop: {}", err());
    assert!(!stopped, "drainit stopped itself: {}", err());
    assert_eq!(status.and_then(|s| s.code()), Some(7), "{}", err());
}
