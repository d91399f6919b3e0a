//! Drain actions: `--on-drain CMD` runs when a drain starts, `--stop-command
//! CMD` runs instead of the stop signal, `--on-drain-post URL` POSTs when a
//! drain starts. Each runs beside the drain, never in its way: in a process
//! group of its own, its output on drainit's stderr (prefixed, rate-capped),
//! bounded by the kill deadline and by the app's life; a failing, hanging,
//! forking or flooding action is logged and never fatal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

/// Runs drainit as a plain parent and returns its one refusal line; fails
/// unless it exited 125 at once with exactly one line on stderr.
fn refusal(d: Drainit, what: &str) -> String {
    let out = d.run(secs(10.0));
    assert_eq!(out.code, Some(125), "{what}: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{what}: {:?}", out.stderr);
    assert!(out.stdout.is_empty(), "{what}: nothing on stdout");
    out.stderr.trim_end_matches('\n').to_string()
}

#[test]
fn bad_actions_are_refused_at_start_naming_the_option_and_the_variable() {
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("--on-drain", "", &[], "--on-drain: the command is empty"),
        (
            "--on-drain",
            " \t ",
            &[],
            "--on-drain: the command is empty",
        ),
        (
            "--on-drain",
            "sh -c 'echo hi",
            &[],
            "--on-drain: unbalanced ' (the command is split into words as a shell would, without expansion: quotes must pair up)",
        ),
        (
            "--stop-command",
            "nginx -s \"quit",
            &["--kill-after", "5s"],
            "--stop-command: unbalanced \" (the command is split into words as a shell would, without expansion: quotes must pair up)",
        ),
        (
            "--stop-command",
            "true",
            &[],
            "--stop-command: needs a kill deadline (--kill-after or --stop-timeout): a stop command that hangs must not leave the app running",
        ),
        (
            "--on-drain",
            "/no/such/deregister --now",
            &[],
            "--on-drain: /no/such/deregister: no such file",
        ),
        (
            "--stop-command",
            "{dir}/not-executable",
            &["--stop-timeout", "10s"],
            "--stop-command: {dir}/not-executable: not executable",
        ),
        ("--on-drain", "{dir}", &[], "--on-drain: {dir}: not a file"),
        (
            "--on-drain-post",
            "https://consul:8500/",
            &[],
            "--on-drain-post: 'https://consul:8500/': only http:// URLs are supported (expected http://HOST[:PORT][/PATH])",
        ),
    ];
    let dir = Scratch::new("bad-actions");
    std::fs::write(dir.path("not-executable"), "#!/bin/sh\n").unwrap();
    let dir = dir.str("");
    let dir = dir.trim_end_matches('/');
    for (option, value, rest, want) in cases {
        let (value, want) = (value.replace("{dir}", dir), want.replace("{dir}", dir));
        for by_env in [false, true] {
            // An empty variable counts as unset: only the flag can be empty.
            if by_env && value.trim().is_empty() {
                continue;
            }
            let d = Drainit::new(Mode::Parent)
                .options(&[(option, &value)], by_env)
                .args(rest)
                .args(&["sh", "-c", "sleep 5"]);
            let line = refusal(d, &format!("{option} {value:?} by_env={by_env}"));
            let var = format!(
                "DRAINIT_{}",
                option
                    .trim_start_matches("--")
                    .replace('-', "_")
                    .to_uppercase()
            );
            let expected = if by_env {
                format!("drainit: error: {want} (from {var})")
            } else {
                format!("drainit: error: {want}")
            };
            assert_eq!(line, expected, "by_env={by_env}");
        }
    }
    // A program not on PATH is named with the PATH searched.
    let line = refusal(
        Drainit::new(Mode::Parent)
            .env("PATH", "/usr/bin:/bin")
            .args(&["--on-drain", "consul-deregister web", "true"]),
        "not on PATH",
    );
    assert_eq!(
        line,
        "drainit: error: --on-drain: command 'consul-deregister' not found in PATH (/usr/bin:/bin)"
    );
}
