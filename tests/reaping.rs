//! Every child that exits is reaped, orphans included; what the app leaves
//! behind gets SIGTERM (unless it already had one), a grace period, then SIGKILL.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

#[test]
fn a_hundred_orphans_are_reaped_with_no_zombie_left() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("orphans");
        let (ready, log) = (dir.path("ready"), dir.path("log"));
        let mut r = Drainit::new(mode)
            .app(&[
                "--ready",
                &dir.str("ready"),
                "--log",
                &dir.str("log"),
                "--orphans",
                "100",
            ])
            .spawn();
        let app = r.ready(&ready);
        let drainit = r.pid();
        // The orphans now belong to drainit (PID 1, or subreaper): the app saw
        // each one's parent become its own before it got ready, and they live
        // until it lets them go.
        assert_eq!(lines(&log), ["orphans adopted: 100"], "{mode:?}");
        let adopted = children_of(drainit).len();
        assert_eq!(
            adopted, 101,
            "{mode:?}: {adopted} children of drainit, not the app and its 100 orphans"
        );
        kill(app, SIGUSR1);
        let left = wait_until(secs(15.0), || {
            let children = children_of(drainit);
            (children.len() == 1).then_some(children)
        });
        let children = children_of(drainit);
        let zombies = children.iter().filter(|p| state(**p) == Some('Z')).count();
        assert!(
            left.is_some(),
            "{mode:?}: {} children left, {zombies} zombies",
            children.len()
        );
        assert_eq!(children.into_iter().collect::<Vec<_>>(), [app]);
        assert_eq!(
            lines(&log),
            ["orphans adopted: 100", "SIGUSR1"],
            "{mode:?}: only the app logs"
        );
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(0));
    }
}

/// `sh -c 'APP & wait-for-go; exit 3'`: the app (the shell) exits 3 once
/// the test calls `go`, and leaves a process behind in its group.
fn leave_behind(dir: &Scratch, setsid: bool, on_term: &str) -> String {
    format!(
        "{} python3 {} --ready {} --log {} --on-term {on_term} & \
         while [ ! -e {go} ]; do sleep 0.01; done; exit 3",
        if setsid { "setsid" } else { "" },
        app(),
        dir.str("ready"),
        dir.str("log"),
        go = dir.str("go"),
    )
}

/// Lets the shell of `leave_behind` exit. Returns the time since start taken
/// just before: the shell, so the leftovers' grace, cannot end before it.
fn go(r: &Running, dir: &Scratch) -> std::time::Duration {
    let at = r.elapsed();
    std::fs::write(dir.path("go"), "").unwrap();
    at
}

#[test]
fn leftovers_get_sigterm_and_time_to_finish() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("leftover");
        let mut r = Drainit::new(mode)
            .args(&["sh", "-c", &leave_behind(&dir, false, "slow:1")])
            .spawn();
        let leftover = r.ready(&dir.path("ready"));
        go(&r, &dir);
        let out = r.wait(secs(20.0));
        assert_eq!(
            out.code,
            Some(3),
            "{mode:?}: the app's code: {}",
            out.stderr
        );
        assert_eq!(
            log_lines(&dir.path("log")),
            ["SIGTERM", "shutdown started", "shutdown complete"],
            "{mode:?}"
        );
        assert!(!running(leftover));
        assert!(
            out.stderr.contains("left processes behind"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn leftovers_that_ignore_sigterm_are_killed_after_the_grace() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("stubborn");
        let mut r = Drainit::new(mode)
            .args(&[
                "--grace",
                "1s",
                "sh",
                "-c",
                &leave_behind(&dir, false, "ignore"),
            ])
            .spawn();
        let leftover = r.ready(&dir.path("ready"));
        let released = go(&r, &dir);
        let out = r.wait(secs(20.0));
        assert_eq!(out.code, Some(3), "{mode:?}: {}", out.stderr);
        let waited = out.elapsed - released;
        assert!(
            waited >= secs(1.0),
            "{mode:?}: killed before the grace: {waited:?}"
        );
        assert!(waited < secs(4.0), "{mode:?}: grace too long: {waited:?}");
        assert_eq!(log_lines(&dir.path("log")), ["SIGTERM"], "{mode:?}");
        assert!(!running(leftover), "{mode:?}: the leftover survived");
        assert!(out.stderr.contains("SIGKILL"), "{}", out.stderr);
    }
}

#[test]
fn as_pid1_leftovers_in_other_sessions_get_sigterm_too() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("setsid");
    let mut r = Drainit::new(Mode::Pid1)
        .args(&["sh", "-c", &leave_behind(&dir, true, "slow:0.5")])
        .spawn();
    let leftover = r.ready(&dir.path("ready"));
    assert_eq!(
        pgrp(leftover),
        Some(leftover),
        "the leftover leads a group of its own"
    );
    go(&r, &dir);
    let out = r.wait(secs(20.0));
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    assert_eq!(
        log_lines(&dir.path("log")),
        ["SIGTERM", "shutdown started", "shutdown complete"]
    );
}
