//! `drainit --explain` prints the timeline the options give and runs nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

#[test]
fn explains_the_ecs_timeline_without_running_anything() {
    let dir = Scratch::new("explain");
    let marker = dir.str("ran");
    let out = Drainit::new(Mode::Parent)
        .args(&[
            "--explain",
            "--drain-file",
            "/tmp/draining",
            "--drain-delay",
            "5s",
            "--stop-timeout",
            "30s",
        ])
        .args(&["--", "touch", &marker])
        .run(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(!dir.path("ran").exists(), "--explain ran the command");
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "t+0s   drain file /tmp/draining written",
        "t+5s   the signal that started the drain, then SIGCONT",
        "t+29s  SIGKILL",
        "t+30s  the orchestrator's SIGKILL",
    ] {
        assert!(text.contains(line), "missing '{line}' in:\n{text}");
    }
}

#[test]
fn explain_reads_the_environment_and_validates_first() {
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_DRAIN_DELAY", "15s")
        .env("DRAINIT_KILL_AFTER", "25s")
        .env("DRAINIT_STOP_SIGNAL", "QUIT")
        .arg("--explain")
        .run(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("t+15s  SIGQUIT, then SIGCONT"), "{text}");
    assert!(text.contains("t+25s  SIGKILL"), "{text}");
    let out = Drainit::new(Mode::Parent)
        .args(&["--explain", "--drain-delay", "30s", "--stop-timeout", "30s"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(125));
    assert!(out.stdout.is_empty());
}

#[test]
fn explain_without_drain_options_says_signals_pass_at_once() {
    let out = Drainit::new(Mode::Parent).arg("--explain").run(secs(10.0));
    assert_eq!(out.code, Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("no drain option"), "{text}");
    assert!(text.contains("warning: nothing escalates"), "{text}");
}
