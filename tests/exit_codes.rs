//! drainit exits with the app's code, 128+N for a signal, 127/126 when the
//! command cannot be run, and 125 for its own errors, as PID 1 and as a parent.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

fn run(mode: Mode, args: &[&str]) -> Outcome {
    Drainit::new(mode).args(args).run(secs(20.0))
}

#[test]
fn exits_with_the_apps_code() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for (args, want) in [
            (&["true"][..], 0),
            (&["false"][..], 1),
            (&["sh", "-c", "exit 3"][..], 3),
            (&["sh", "-c", "exit 255"][..], 255),
            (&["--", "sh", "-c", "exit 42"][..], 42),
        ] {
            let out = run(mode, args);
            assert_eq!(out.code, Some(want), "{mode:?} {args:?}: {}", out.stderr);
        }
    }
}

#[test]
fn exits_128_plus_n_when_the_app_is_killed_by_signal_n() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for (signal, want) in [("KILL", 137), ("TERM", 143), ("USR1", 138), ("SEGV", 139)] {
            let script = format!("kill -{signal} $$");
            let out = run(mode, &["sh", "-c", &script]);
            assert_eq!(out.code, Some(want), "{mode:?} {signal}: {}", out.stderr);
            assert!(
                out.stderr.contains(&format!("killed by SIG{signal}")),
                "{}",
                out.stderr
            );
        }
    }
}

#[test]
fn exits_127_when_the_command_is_not_found() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for cmd in ["no-such-command-xyz", "/no/such/path"] {
            let out = run(mode, &[cmd]);
            assert_eq!(out.code, Some(127), "{mode:?}: {}", out.stderr);
            assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
            assert!(
                out.stderr.contains(cmd),
                "names the command: {}",
                out.stderr
            );
            assert!(out.stdout.is_empty());
        }
    }
}

#[test]
fn exits_126_when_the_command_cannot_be_executed() {
    let dir = Scratch::new("noexec");
    let file = dir.path("not-executable");
    std::fs::write(&file, "#!/bin/sh\nexit 0\n").unwrap();
    let dir_path = dir.str("");
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for cmd in [file.to_str().unwrap(), dir_path.as_str()] {
            let out = run(mode, &[cmd]);
            assert_eq!(out.code, Some(126), "{mode:?} {cmd}: {}", out.stderr);
            assert_eq!(out.stderr.lines().count(), 1, "one line: {}", out.stderr);
            assert!(
                out.stderr.contains(cmd.trim_end_matches('/')),
                "names the command: {}",
                out.stderr
            );
        }
    }
}

#[test]
fn exits_125_with_one_line_for_its_own_errors() {
    for args in [
        &["--bogus", "true"][..],
        &[][..],
        &["--grace", "soon", "true"][..],
        &["--stop-signal", "NOPE", "true"][..],
    ] {
        let out = run(Mode::Parent, args);
        assert_eq!(out.code, Some(125), "{args:?}: {}", out.stderr);
        assert_eq!(
            out.stderr.lines().count(),
            1,
            "{args:?}: one line: {}",
            out.stderr
        );
        assert!(out.stderr.starts_with("drainit: "), "{}", out.stderr);
        assert!(out.stdout.is_empty(), "nothing on stdout");
    }
}
