//! Start-up at the floor: between drainit's own exec and the app's, drainit
//! makes a few dozen syscalls at most (tini makes about 60), and no
//! `mmap`/`munmap`/`brk`: no heap churn. Counted from outside with `strace -f`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::process::Command;

/// The budget: drainit's syscalls (its own and its child's) from its exec to
/// the app's exec, both excluded.
const BUDGET: usize = 60;

/// The syscalls drainit made, by name, in order, from an `strace -f` log:
/// those of the process that exec'd `bin` and of any process that appears
/// after that (its child: nothing else forks meanwhile), until one of them
/// exec'd something else (the app).
fn syscalls_before_the_app(log: &str, bin: &str) -> Vec<String> {
    let mut before: Vec<&str> = Vec::new(); // pids seen before drainit's exec
    let mut started = false;
    let mut out = Vec::new();
    let exec_of_drainit = format!("execve(\"{bin}\"");
    for line in log.lines() {
        let Some((pid, rest)) = line.split_once(char::is_whitespace) else {
            continue;
        };
        let rest = rest.trim_start();
        let name = rest.split('(').next().unwrap_or_default();
        if !started {
            if rest.starts_with(&exec_of_drainit) && !rest.contains("= -1") {
                started = true;
                before.retain(|p| *p != pid);
            } else if !before.contains(&pid) {
                before.push(pid);
            }
            continue;
        }
        // Not drainit's; or "<... clone resumed>", "+++ exited", "--- SIGCHLD":
        // not new calls.
        if before.contains(&pid) || rest.starts_with(['<', '+', '-']) {
            continue;
        }
        if name == "execve" && !rest.starts_with(&exec_of_drainit) {
            return out;
        }
        out.push(name.to_string());
    }
    panic!("the app's exec is not in the log:\n{log}");
}

/// Whether the binary names an ELF interpreter (a dynamic loader) near its start.
fn dynamically_linked(bin: &std::path::Path) -> bool {
    let head: Vec<u8> = std::fs::read(bin).unwrap().into_iter().take(4096).collect();
    head.windows(4).any(|w| w == b"/ld-")
}

#[test]
fn drainit_reaches_the_apps_exec_in_few_syscalls_and_no_heap_churn() {
    if !can_run(Mode::Pid1) {
        return; // strace -f of unshare'd processes: root
    }
    let strace_works = Command::new("strace")
        .args(["-o", "/dev/null", "true"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        strace_works,
        "strace is missing (scripts/deps.sh test installs it)"
    );
    let bin = bin();
    let bin_str = bin.to_str().unwrap();
    for mode in BOTH {
        let dir = Scratch::new("strace");
        let log = dir.path("log");
        let mut command = Command::new("strace");
        // -f follows the clone; -qq keeps out attach/exit notes; -e trace=all is the default.
        command.args(["-f", "-qq", "-o"]).arg(&log);
        if mode == Mode::Pid1 {
            command.args(["unshare", "--pid", "--fork", "--mount-proc"]);
        }
        let status = command
            .args([bin_str, "-q", "--", "/bin/true"])
            .env_remove("DRAINIT_BIN")
            .status()
            .unwrap();
        assert!(status.success(), "{mode:?}: {status}");
        let log = std::fs::read_to_string(&log).unwrap();
        let mut calls = syscalls_before_the_app(&log, bin_str);
        if dynamically_linked(&bin) {
            // cargo's own test build: the dynamic loader's work before main is
            // not drainit's; count from drainit's first call (blocking signals).
            let first = calls.iter().position(|c| c == "rt_sigprocmask").unwrap();
            calls.drain(..first);
        }
        eprintln!(
            "{mode:?}: {} syscalls before the app's exec: {calls:?}",
            calls.len()
        );
        assert!(
            calls.len() <= BUDGET,
            "{mode:?}: {} syscalls before the app's exec (budget {BUDGET}): {calls:?}",
            calls.len()
        );
        let churn: Vec<_> = calls
            .iter()
            .filter(|c| ["mmap", "munmap", "brk", "mremap"].contains(&c.as_str()))
            .collect();
        assert!(
            churn.is_empty(),
            "{mode:?}: heap churn before the app's exec: {calls:?}"
        );
        // Counted from the right place: drainit's own first steps are there.
        assert!(calls.contains(&"rt_sigprocmask".to_string()), "{calls:?}");
        assert!(calls.contains(&"signalfd4".to_string()), "{calls:?}");
    }
}
