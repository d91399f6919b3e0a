//! The forwarding hot path: a signal that starts no drain costs drainit
//! exactly two syscalls, the signalfd `read` that wakes it and the `kill`
//! that passes the signal on: no `waitpid`, `poll`, clock read or log write
//! on the way. Counted from outside with `strace -p`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::process::{Command, Stdio};

/// The name of each syscall in an `strace` log of one process, in order
/// (a call cut by the attach or the detach counts once).
fn calls(log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| !l.starts_with(['<', '+', '-']))
        .filter_map(|l| l.split('(').next())
        .map(|name| name.trim().to_string())
        .filter(|name| !name.is_empty())
        .collect()
}

#[test]
fn a_forwarded_signal_costs_a_read_and_a_kill() {
    if !can_run(Mode::Pid1) {
        return; // strace -p of another user's process and of a namespace's init: root
    }
    for mode in BOTH {
        let dir = Scratch::new("hot-path");
        let log = dir.path("log");
        let mut r = Drainit::new(mode)
            .app(&["--ready", &dir.str("ready"), "--log", &dir.str("log")])
            .spawn();
        r.ready(&dir.path("ready"));
        let drainit = r.pid();
        let strace_log = dir.path("strace");
        let mut strace = Command::new("strace")
            .args(["-qq", "-o"])
            .arg(&strace_log)
            .args(["-p", &drainit.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("strace is missing (scripts/deps.sh test installs it)");
        // Hand-shake: strace has attached.
        wait_until(secs(10.0), || {
            let status = std::fs::read_to_string(format!("/proc/{drainit}/status")).ok()?;
            let tracer = status.lines().find(|l| l.starts_with("TracerPid:"))?;
            (tracer.split_whitespace().nth(1)? != "0").then_some(())
        })
        .unwrap_or_else(|| panic!("{mode:?}: strace did not attach"));
        // drainit's first wake also looks for children that exited before it
        // could hear of them (inherited across its exec): one warm-up signal.
        let forwarded = [SIGWINCH, SIGUSR1, SIGUSR2, SIGHUP];
        for (i, signal) in forwarded.iter().enumerate() {
            r.signal(*signal);
            // Hand-shake: the app has it, so drainit's kill is done.
            wait_until(secs(10.0), || (lines(&log).len() > i).then_some(()))
                .unwrap_or_else(|| panic!("{mode:?}: signal {signal} never reached the app"));
        }
        // Detach (strace ends its log on SIGINT), then end the run.
        kill(strace.id() as i32, SIGINT);
        strace.wait().unwrap();
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(0), "{mode:?}");
        let text = std::fs::read_to_string(&strace_log).unwrap();
        let calls = calls(&text);
        let kills: Vec<usize> = (0..calls.len()).filter(|&i| calls[i] == "kill").collect();
        assert_eq!(
            kills.len(),
            forwarded.len(),
            "{mode:?}: one kill a signal:\n{text}"
        );
        // After the warm-up, per signal: read, kill; then the read it waits in.
        let hot = &calls[kills[1] - 1..];
        let want = ["read", "kill", "read", "kill", "read", "kill", "read"];
        assert_eq!(hot, want, "{mode:?}: per forwarded signal:\n{text}");
        // Each kill went to the app's group, with the signal that came in.
        for (line, signal) in text
            .lines()
            .filter(|l| l.starts_with("kill("))
            .zip(forwarded)
        {
            assert!(
                line.starts_with("kill(-")
                    && line.contains(&format!(", {}) ", signal_name(signal))),
                "{mode:?}: {line}"
            );
        }
    }
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        SIGUSR1 => "SIGUSR1",
        SIGUSR2 => "SIGUSR2",
        SIGHUP => "SIGHUP",
        SIGWINCH => "SIGWINCH",
        _ => "?",
    }
}
