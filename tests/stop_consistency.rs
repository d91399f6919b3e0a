//! The same rules whatever the options: a SIGTERM that starts no drain still
//! reaches a stopped app (SIGCONT follows it, as every stop signal drainit
//! sends), and "grace period over: SIGKILL" is logged only when something was
//! left to kill.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

/// Stops the app with SIGSTOP, then sends drainit SIGTERM: only a SIGCONT
/// after the SIGTERM lets the app act on it and exit.
fn stopped_app_gets_sigterm(mode: Mode, options: &[&str], before: Option<(i32, &str)>) {
    let dir = Scratch::new("stopped-term");
    let (ready, log) = (dir.path("ready"), dir.path("log"));
    let mut r = Drainit::new(mode)
        .args(options)
        .app(&["--ready", &dir.str("ready"), "--log", &dir.str("log")])
        .spawn();
    let app = r.ready(&ready);
    if let Some((signal, logged)) = before {
        r.signal(signal);
        r.wait_for_log(logged, 1, secs(10.0));
    }
    kill(app, SIGSTOP);
    wait_until(secs(10.0), || (state(app) == Some('T')).then_some(()))
        .unwrap_or_else(|| panic!("{mode:?} {options:?}: the app never stopped"));
    r.signal(SIGTERM);
    let out = r.wait(secs(15.0));
    assert_eq!(
        out.code,
        Some(0),
        "{mode:?} {options:?}: the stopped app never acted on SIGTERM; stderr:\n{}",
        out.stderr
    );
    assert_eq!(log_lines(&log), ["SIGTERM"], "{mode:?} {options:?}");
}

/// A drain that USR1 starts, with a delay the test never waits out.
const USR1_DRAIN: &[&str] = &[
    "--drain-on",
    "USR1",
    "--drain-delay",
    "30s",
    "--kill-after",
    "60s",
];

#[test]
fn sigterm_outside_drain_on_is_followed_by_sigcont() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        // As everywhere else: no drain option at all.
        stopped_app_gets_sigterm(mode, &[], None);
        // A drain option whose --drain-on does not include TERM.
        stopped_app_gets_sigterm(mode, &["--drain-on", "USR1"], None);
        stopped_app_gets_sigterm(mode, USR1_DRAIN, None);
        // And during the drain delay that USR1 started.
        stopped_app_gets_sigterm(mode, USR1_DRAIN, Some((SIGUSR1, "drain started")));
    }
}

#[test]
fn zero_grace_logs_a_sigkill_only_when_something_is_left() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let out = Drainit::new(mode)
            .args(&["--grace", "0", "--", "sh", "-c", "exit 3"])
            .run(secs(10.0));
        assert_eq!(out.code, Some(3), "{mode:?}: {}", out.stderr);
        assert!(
            !out.stderr.contains("SIGKILL"),
            "{mode:?}: a SIGKILL logged with nothing left:\n{}",
            out.stderr
        );

        // A leftover that ignores SIGTERM: the grace of 0 ends with SIGKILL, logged.
        let out = Drainit::new(mode)
            .args(&[
                "--grace",
                "0",
                "--",
                "sh",
                "-c",
                "trap '' TERM; sleep 60 & exit 3",
            ])
            .run(secs(10.0));
        assert_eq!(out.code, Some(3), "{mode:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("grace period over: SIGKILL"),
            "{mode:?}: no SIGKILL logged for the leftover:\n{}",
            out.stderr
        );
        assert!(out.elapsed < secs(5.0), "{mode:?}: took {:?}", out.elapsed);
    }
}
