//! What drainit says when something fails: refusals (125) and start-up
//! errors (126, 127) are written whatever the log level, `DRAINIT_LOG=off`
//! included; and every OS error reads the same way, one lower-case phrase
//! after a colon (`permission denied`), never `Permission denied (os error 13)`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

use std::net::TcpListener;

#[test]
fn refusals_and_start_up_errors_are_written_with_the_log_off() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let cases: [(&[&str], i32, String); 4] = [
        (
            &["--health-listen", &addr, "true"],
            125,
            format!("drainit: error: --health-listen {addr}: cannot listen there: address in use"),
        ),
        (
            &["--grace", "soon", "true"],
            125,
            "drainit: error: --grace: invalid duration 'soon'".into(),
        ),
        (
            &["/etc"],
            126,
            "drainit: error: command cannot be executed: /etc: permission denied".into(),
        ),
        (
            &["drainit-no-such-command"],
            127,
            "drainit: error: command not found: drainit-no-such-command: no such file or directory"
                .into(),
        ),
    ];
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for level in ["off", "error"] {
            for (args, code, line) in &cases {
                let what = format!("{mode:?} DRAINIT_LOG={level} {args:?}");
                let out = Drainit::new(mode)
                    .env("DRAINIT_LOG", level)
                    .args(args)
                    .run(secs(10.0));
                assert_eq!(out.code, Some(*code), "{what}: {}", out.stderr);
                let lines = out.stderr_lines();
                assert_eq!(lines.len(), 1, "{what}: one line: {:?}", out.stderr);
                assert!(
                    lines[0].starts_with(line.as_str()),
                    "{what}: {:?}",
                    out.stderr
                );
            }
        }
        // -q too.
        let out = Drainit::new(mode)
            .args(&["-q", "drainit-no-such-command"])
            .run(secs(10.0));
        assert_eq!(out.code, Some(127), "{mode:?}");
        assert!(out.stderr.contains("command not found"), "{mode:?}");
    }
    drop(taken);
}

/// Asserts that no line of `text` ends in the OS's own wording.
fn no_os_error(text: &str, what: &str) {
    assert!(!text.contains("(os error"), "{what}: {text}");
}

#[test]
fn os_errors_read_the_same_everywhere() {
    // A port in use, a command that is not there, and no descriptor left for
    // the signalfd: refusals and start-up errors.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Drainit::new(Mode::Parent)
        .args(&["--health-listen", &addr, "true"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(125));
    no_os_error(&out.stderr, "port in use");
    assert!(out.stderr.ends_with(": address in use\n"), "{}", out.stderr);
    drop(taken);

    let out = Drainit::new(Mode::Parent)
        .through(&["prlimit", "--nofile=3:3"])
        .args(&["true"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    no_os_error(&out.stderr, "no descriptor left");
    assert_eq!(
        out.stderr,
        "drainit: error: cannot create a signalfd: no file descriptors available\n"
    );

    // The health check against a port nobody listens on.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = Drainit::new(Mode::Parent)
        .args(&[
            "--healthcheck",
            "--url",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .run(secs(10.0));
    assert_eq!(out.code, Some(1));
    let answer = String::from_utf8_lossy(&out.stdout);
    no_os_error(&answer, "closed port");
    assert!(answer.ends_with(": connection refused\n"), "{answer}");

    // Failures once the app runs, made by the kernel on request (strace
    // injects them): drainit cannot become a subreaper, and cannot send the
    // first signal it forwards.
    let dir = Scratch::new("os-errors");
    let log = dir.path("log");
    let mut r = Drainit::new(Mode::Parent)
        .through(&[
            "strace",
            "-qq",
            "-o",
            "/dev/null",
            "-e",
            "trace=prctl,kill",
            "-e",
            "inject=prctl:error=EPERM",
            "-e",
            "inject=kill:error=EPERM:when=1",
        ])
        .app(&["--ready", &dir.str("ready"), "--log", &dir.str("log")])
        .spawn();
    wait_for_file(&dir.path("ready"), secs(15.0));
    assert!(
        dir.path("ready").exists(),
        "the app never started (is strace installed? scripts/deps.sh test): {}",
        r.stderr()
    );
    // strace is the test's child here; drainit is strace's.
    let strace = r.pid();
    let drainit = wait_until(secs(10.0), || {
        children_of(strace)
            .into_iter()
            .find(|p| comm(*p) == Some(bin_comm()))
    })
    .expect("drainit under strace");
    kill(drainit, SIGUSR1);
    r.wait_for_log("cannot send SIGUSR1", 1, secs(10.0));
    kill(drainit, SIGTERM);
    wait_until(secs(10.0), || {
        lines(&log).contains(&"SIGTERM".to_string()).then_some(())
    })
    .expect("SIGTERM forwarded");
    let out = r.wait(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    no_os_error(&out.stderr, "under strace");
    let has = |text: &str| out.stderr.lines().any(|l| l.contains(text));
    assert!(
        has("cannot become a child subreaper (operation not permitted)"),
        "{}",
        out.stderr
    );
    assert!(
        has("cannot send SIGUSR1 to the app's process group") && has(": operation not permitted"),
        "{}",
        out.stderr
    );
}
