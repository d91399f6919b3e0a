//! A shell-form CMD: `sh -c "app; ..."`. The shell dies of SIGTERM at once;
//! the app behind it still gets SIGTERM, exactly once, and finishes its slow
//! shutdown before drainit exits.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

#[test]
fn the_app_behind_sh_c_gets_sigterm_once_and_finishes() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("shellform");
        let (ready, log) = (dir.path("ready"), dir.path("log"));
        // `; echo after` keeps the shell from exec'ing the app.
        let script = format!(
            "python3 {} --ready {} --log {} --on-term slow:2; echo after",
            app(),
            dir.str("ready"),
            dir.str("log")
        );
        let mut r = Drainit::new(mode).args(&["sh", "-c", &script]).spawn();
        let app = r.ready(&ready);
        assert_ne!(
            comm(app).as_deref(),
            Some("sh"),
            "the app is not the shell itself"
        );
        let sent = r.signal(SIGTERM);
        let out = r.wait(secs(20.0));
        // The shell was killed by SIGTERM: its status is what drainit exits with.
        assert_eq!(out.code, Some(143), "{mode:?}: {}", out.stderr);
        assert_eq!(
            log_lines(&log),
            ["SIGTERM", "shutdown started", "shutdown complete"],
            "{mode:?}"
        );
        assert!(
            out.elapsed - sent >= secs(2.0),
            "{mode:?}: drainit waited for the slow shutdown"
        );
        assert!(
            out.elapsed - sent < secs(5.0),
            "{mode:?}: but not for the whole grace"
        );
        assert!(!String::from_utf8_lossy(&out.stdout).contains("after"));
    }
}
