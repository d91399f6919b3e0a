//! Signals drainit was started with ignored still reach the app when sent to
//! drainit (the app may catch them), and an ignored SIGCHLD neither loses the
//! app's exit code nor reaches the app other than ignored.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

/// Starts drainit with HUP, USR2, RTMIN+1 (35) and CHLD ignored.
const LAUNCHER: &str = r#"
import os, signal, sys
for s in (signal.SIGHUP, signal.SIGUSR2, 35, signal.SIGCHLD):
    signal.signal(s, signal.SIG_IGN)
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn signals_ignored_at_start_are_still_forwarded() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("ignored");
        let (ready, log) = (dir.path("ready"), dir.path("log"));
        let mut r = Drainit::new(mode)
            .through(&["python3", "-c", LAUNCHER])
            .app(&["--ready", &dir.str("ready"), "--log", &dir.str("log")])
            .spawn();
        r.ready(&ready);
        for (signal, name) in [(1, "SIGHUP"), (12, "SIGUSR2"), (35, "SIG35")] {
            r.signal(signal);
            wait_for_line(&log, name, secs(10.0));
        }
        r.signal(SIGTERM);
        let out = r.wait(secs(10.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
    }
}

#[test]
fn the_app_gets_them_ignored_and_an_ignored_sigchld_loses_no_exit_code() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let out = Drainit::new(mode)
            .through(&["python3", "-c", LAUNCHER])
            .args(&["sh", "-c", "sleep 0.1 & exit 3"])
            .run(secs(20.0));
        assert_eq!(out.code, Some(3), "{mode:?}: {}", out.stderr);
        let out = Drainit::new(mode)
            .through(&["python3", "-c", LAUNCHER])
            .args(&["cat", "/proc/self/status"])
            .run(secs(20.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        let status = String::from_utf8(out.stdout).unwrap();
        let ignored = status
            .lines()
            .find_map(|l| l.strip_prefix("SigIgn:"))
            .map(|v| u64::from_str_radix(v.trim(), 16).unwrap())
            .unwrap();
        // HUP (bit 0), USR2 (11), CHLD (16), 35 (34).
        let want = 1 | 1 << 11 | 1 << 16 | 1 << 34;
        assert_eq!(ignored & want, want, "{mode:?}: SigIgn {ignored:x}");
    }
}
