//! Every signal drainit receives but SIGCHLD reaches the app; drainit itself
//! is never stopped; a signal sent right after start is not lost, nor is any
//! of a burst bigger than one read; a stopped app is not taken for an exited
//! one.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

/// (number, the name the fixture logs)
const FORWARDED: &[(i32, &str)] = &[
    (1, "SIGHUP"),
    (2, "SIGINT"),
    (3, "SIGQUIT"),
    (10, "SIGUSR1"),
    (12, "SIGUSR2"),
    (13, "SIGPIPE"),
    (14, "SIGALRM"),
    (18, "SIGCONT"),
    (20, "SIGTSTP"),
    (21, "SIGTTIN"),
    (22, "SIGTTOU"),
    (23, "SIGURG"),
    (26, "SIGVTALRM"),
    (28, "SIGWINCH"),
    (29, "SIGIO"),
    (30, "SIGPWR"),
    (34, "SIG34"),
    (40, "SIG40"),
    (64, "SIG64"),
];

/// drainit (with `args`) running the fixture app, which logs each signal it
/// gets to `log` in the scratch directory; returns once the app is ready,
/// with the app's pid.
fn logging_app(mode: Mode, name: &str, args: &[&str]) -> (Running, Scratch, i32) {
    let dir = Scratch::new(name);
    let mut r = Drainit::new(mode)
        .args(args)
        .app(&["--ready", &dir.str("ready"), "--log", &dir.str("log")])
        .spawn();
    let app = r.ready(&dir.path("ready"));
    (r, dir, app)
}

#[test]
fn every_signal_reaches_the_app_and_none_stops_drainit() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let (mut r, dir, _) = logging_app(mode, "forward", &[]);
        let log = dir.path("log");
        let drainit = r.pid();
        for (i, (signal, name)) in FORWARDED.iter().enumerate() {
            r.signal(*signal);
            // Hand-shake: the app logged it (and nothing else) before the next one.
            wait_until(secs(10.0), || (lines(&log).len() > i).then_some(())).unwrap_or_else(|| {
                panic!(
                    "{mode:?}: {name} never reached the app; stderr:\n{}",
                    r.stderr()
                )
            });
            assert_eq!(lines(&log)[i], *name, "{mode:?}: log {:?}", lines(&log));
            assert_ne!(
                state(drainit),
                Some('T'),
                "{mode:?}: drainit stopped by {name}"
            );
        }
        r.signal(SIGTERM);
        let out = r.wait(secs(10.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        let log = lines(&log);
        let names: Vec<&str> = FORWARDED.iter().map(|(_, name)| *name).collect();
        assert_eq!(
            log[..names.len()],
            names,
            "{mode:?}: each signal exactly once, in order"
        );
        // Then SIGTERM, with the SIGCONT drainit sends after it (which the
        // fixture may or may not log, before or after).
        let rest: Vec<&str> = log[names.len()..]
            .iter()
            .map(String::as_str)
            .filter(|l| *l != "SIGCONT")
            .collect();
        assert_eq!(rest, ["SIGTERM"], "{mode:?}: {log:?}");
    }
}

#[test]
fn sigterm_reaches_the_app_and_its_code_is_kept() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        // An app with the default disposition dies of it: 128 + 15.
        let mut r = Drainit::new(mode).args(&["sleep", "1000"]).spawn();
        r.app_pid();
        r.signal(SIGTERM);
        let out = r.wait(secs(10.0));
        assert_eq!(out.code, Some(143), "{mode:?}: {}", out.stderr);
        // SIGINT likewise: 128 + 2.
        let mut r = Drainit::new(mode).args(&["sleep", "1000"]).spawn();
        r.app_pid();
        r.signal(SIGINT);
        assert_eq!(r.wait(secs(10.0)).code, Some(130), "{mode:?}");
    }
}

#[test]
fn sigterm_sent_right_after_start_is_not_lost() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for round in 0..10 {
            let mut r = Drainit::new(mode).args(&["sleep", "1000"]).spawn();
            let pid = r.pid();
            // As soon as drainit can hold a signal at all (its mask is set, its
            // very first step), and usually before the app even exists.
            wait_until(secs(10.0), || {
                (comm(pid) == Some(bin_comm())
                    && status_field(pid, "SigBlk").is_some_and(|m| m != "0000000000000000"))
                .then_some(())
            })
            .expect("drainit blocks its signals");
            kill(pid, SIGTERM);
            let out = r.wait(secs(10.0));
            assert_eq!(
                out.code,
                Some(143),
                "{mode:?} round {round}: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn a_stopped_app_is_not_taken_for_an_exited_one() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let (mut r, dir, app) = logging_app(mode, "stopped", &["--verbose"]);
        let log = dir.path("log");
        kill(app, SIGSTOP);
        wait_until(secs(10.0), || (state(app) == Some('T')).then_some(())).expect("app stops");
        // drainit got a SIGCHLD for the stop. Hand-shake: two signals it
        // forwards, one after the other; once it has logged the second, it
        // has been through its loop (read signals, reap, act) at least once
        // since the SIGCHLD: had it taken the stop for an exit, it would be gone.
        for times in 1..=2 {
            r.signal(SIGWINCH);
            r.wait_for_log("forwarded SIGWINCH", times, secs(10.0));
        }
        assert!(
            r.alive(),
            "{mode:?}: drainit exited while the app was only stopped: {}",
            r.stderr()
        );
        assert_eq!(state(app), Some('T'));
        // SIGTERM is followed by SIGCONT, so the stopped app acts on it.
        r.signal(SIGTERM);
        let out = r.wait(secs(10.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        assert!(
            lines(&log).contains(&"SIGTERM".to_string()),
            "{:?}",
            lines(&log)
        );
    }
}

#[test]
fn a_burst_larger_than_one_read_reaches_the_app_whole() {
    // drainit takes at most 16 signals a read: 30 queued while it is stopped
    // must all reach the app once it runs again, however they are split.
    let burst: Vec<i32> = (34..64).collect();
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let (mut r, dir, _) = logging_app(mode, "burst", &[]);
        let log = dir.path("log");
        let drainit = r.pid();
        kill(drainit, SIGSTOP);
        wait_until(secs(10.0), || (state(drainit) == Some('T')).then_some(()))
            .expect("drainit stops");
        for signal in &burst {
            kill(drainit, *signal);
        }
        kill(drainit, SIGCONT);
        let want: Vec<String> = burst.iter().map(|n| format!("SIG{n}")).collect();
        let got = wait_until(secs(10.0), || {
            let log = lines(&log);
            want.iter().all(|w| log.contains(w)).then_some(log)
        })
        .unwrap_or_else(|| {
            panic!(
                "{mode:?}: not every signal of the burst reached the app: {:?}\n{}",
                lines(&log),
                r.stderr()
            )
        });
        for w in &want {
            assert_eq!(
                got.iter().filter(|l| *l == w).count(),
                1,
                "{mode:?}: {w} exactly once: {got:?}"
            );
        }
        r.signal(SIGTERM);
        let out = r.wait(secs(10.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
    }
}
