//! Bad input is refused at start, with exit 125 and one line on stderr,
//! `drainit: error: ...`, naming the option and, when the value came from
//! one, the variable; values are shown escaped. An empty variable counts as
//! unset, and a flag wins over its variable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;

/// The refusal for `option value` given as a flag, then as its variable: the
/// line is `drainit: error: {want}`, plus ` (from VAR)` for the variable.
fn refused_both_ways(option: &str, value: &str, rest: &[&str], want: &str) {
    for by_env in [false, true] {
        let d = Drainit::new(Mode::Parent)
            .options(&[(option, value)], by_env)
            .args(rest);
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
        assert_eq!(line, expected);
    }
}

#[test]
fn a_huge_duration_is_refused_at_once_not_a_crash_later() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for by_env in [false, true] {
            let out = Drainit::new(mode)
                .options(&[("--grace", "18446744073709551615")], by_env)
                .args(&["sh", "-c", "sleep 1.2; exit 3"])
                .run(secs(10.0));
            assert_eq!(out.code, Some(125), "{mode:?}: {}", out.stderr);
            assert!(
                out.elapsed < secs(1.0),
                "{mode:?}: refused at start, not after the app: {:?}",
                out.elapsed
            );
            assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
            assert!(
                out.stderr.starts_with("drainit: error: --grace: "),
                "{}",
                out.stderr
            );
        }
    }
}

#[test]
fn every_duration_is_capped_at_a_year_and_never_negative() {
    let options: [(&str, &[&str]); 5] = [
        ("--grace", &["true"]),
        ("--drain-delay", &["true"]),
        ("--kill-after", &["true"]),
        ("--stop-timeout", &["true"]),
        ("--timeout", &["--healthcheck"]),
    ];
    for (option, rest) in options {
        for value in ["18446744073709551615", "8761h", "31536001"] {
            let want =
                format!("{option}: invalid duration '{value}': longer than a year (at most 8760h)");
            refused_both_ways(option, value, rest, &want);
        }
        for value in ["-1", "-3s"] {
            let want = format!("{option}: invalid duration '{value}': negative");
            refused_both_ways(option, value, rest, &want);
        }
    }
    // A year itself is fine.
    let out = Drainit::new(Mode::Parent)
        .args(&["--explain", "--kill-after", "8760h"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn verbose_with_quiet_blames_what_was_given() {
    let line = refusal(
        Drainit::new(Mode::Parent).args(&["-v", "-q", "true"]),
        "-v -q",
    );
    assert_eq!(
        line,
        "drainit: error: the argument '--verbose' cannot be used with '--quiet'"
    );
    let line = refusal(
        Drainit::new(Mode::Parent)
            .env("DRAINIT_VERBOSE", "1")
            .env("DRAINIT_QUIET", "1")
            .arg("true"),
        "both variables",
    );
    assert_eq!(
        line,
        "drainit: error: --verbose and --quiet cannot be used together (from DRAINIT_VERBOSE and DRAINIT_QUIET)"
    );
}

#[test]
fn a_flag_wins_over_a_variable() {
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_QUIET", "1")
        .args(&["-v", "sh", "-c", "exit 4"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    assert!(
        out.stderr.contains("drainit: debug: started"),
        "{}",
        out.stderr
    );
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_VERBOSE", "1")
        .args(&["-q", "sh", "-c", "exit 4"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(4), "{}", out.stderr);
    assert_eq!(out.stderr, "", "quiet");
    // The flag's value is used; the variable's is not even read.
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_GRACE", "forever")
        .args(&["--grace", "1s", "sh", "-c", "exit 5"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(5), "{}", out.stderr);
}

#[test]
fn a_combination_names_where_each_value_came_from() {
    let line = refusal(
        Drainit::new(Mode::Parent)
            .env("DRAINIT_DRAIN_ON", "KILL")
            .arg("true"),
        "DRAIN_ON=KILL",
    );
    assert_eq!(
        line,
        "drainit: error: --drain-on: SIGKILL cannot start a drain: it cannot be caught, so it never reaches drainit (from DRAINIT_DRAIN_ON)"
    );
    let line = refusal(
        Drainit::new(Mode::Parent)
            .env("DRAINIT_DRAIN_DELAY", "10s")
            .args(&["--kill-after", "5s", "true"]),
        "delay from variable",
    );
    assert_eq!(
        line,
        "drainit: error: --drain-delay (10s, from DRAINIT_DRAIN_DELAY) must be shorter than --kill-after (5s)"
    );
    let line = refusal(
        Drainit::new(Mode::Parent).args(&["--kill-after", "0", "true"]),
        "--kill-after 0",
    );
    assert_eq!(line, "drainit: error: --kill-after: must be longer than 0s");
    refused_both_ways(
        "--kill-after",
        "0",
        &["true"],
        "--kill-after: must be longer than 0s",
    );
}

#[test]
fn non_utf8_names_the_option_or_the_variable() {
    let bad = OsString::from_vec(b"\xff".to_vec());
    let flags = [
        "--grace",
        "--drain-delay",
        "--stop-signal",
        "--kill-after",
        "--stop-timeout",
        "--drain-on",
    ];
    for flag in flags {
        let line = refusal(
            Drainit::new(Mode::Parent).arg(flag).arg(&bad).arg("true"),
            flag,
        );
        assert_eq!(
            line,
            format!("drainit: error: {flag}: '\\xff' is not valid UTF-8")
        );
        let var = format!(
            "DRAINIT_{}",
            flag.trim_start_matches("--")
                .replace('-', "_")
                .to_uppercase()
        );
        let mut assignment = OsString::from(format!("{var}="));
        assignment.push(&bad);
        let line = refusal(
            Drainit::new(Mode::Parent)
                .through(&[OsString::from("env"), assignment])
                .arg("true"),
            &var,
        );
        assert_eq!(
            line,
            format!("drainit: error: {flag}: '\\xff' is not valid UTF-8 (from {var})")
        );
    }
    let line = refusal(
        Drainit::new(Mode::Parent)
            .args(&["--healthcheck", "--url"])
            .arg(&bad),
        "--url",
    );
    assert_eq!(line, "drainit: error: --url: '\\xff' is not valid UTF-8");
    let line = refusal(
        Drainit::new(Mode::Parent)
            .through(&["env", "DRAINIT_LOG=\u{7f}x"])
            .arg("true"),
        "DRAINIT_LOG",
    );
    assert_eq!(
        line,
        "drainit: error: DRAINIT_LOG: unknown level '\\u{7f}x' (use off, error, warn, info, debug or trace)"
    );
}

#[test]
fn negative_and_invalid_signals_are_named() {
    refused_both_ways(
        "--stop-signal",
        "-1",
        &["true"],
        "--stop-signal: invalid signal '-1': negative",
    );
    refused_both_ways(
        "--stop-signal",
        "65",
        &["true"],
        "--stop-signal: invalid signal '65': no signal has number 65 (1-64)",
    );
    refused_both_ways(
        "--drain-on",
        "TERM,-15",
        &["true"],
        "--drain-on: invalid signal '-15': negative",
    );
}

#[test]
fn a_stop_signal_must_end_the_app() {
    let refused = [
        (
            "STOP",
            "SIGSTOP",
            "it stops (suspends) a process instead of ending it",
        ),
        (
            "TSTP",
            "SIGTSTP",
            "it stops (suspends) a process instead of ending it",
        ),
        (
            "TTIN",
            "SIGTTIN",
            "it stops (suspends) a process instead of ending it",
        ),
        (
            "TTOU",
            "SIGTTOU",
            "it stops (suspends) a process instead of ending it",
        ),
        (
            "CONT",
            "SIGCONT",
            "it resumes a stopped process instead of ending it",
        ),
        (
            "CHLD",
            "SIGCHLD",
            "its default action is to be ignored, not to end a process",
        ),
        (
            "URG",
            "SIGURG",
            "its default action is to be ignored, not to end a process",
        ),
        (
            "WINCH",
            "SIGWINCH",
            "its default action is to be ignored, not to end a process",
        ),
        (
            "32",
            "SIG32",
            "the C library keeps it for itself (thread cancellation, set*id)",
        ),
        (
            "33",
            "SIG33",
            "the C library keeps it for itself (thread cancellation, set*id)",
        ),
    ];
    for (name, shown, why) in refused {
        refused_both_ways(
            "--stop-signal",
            name,
            &["true"],
            &format!("--stop-signal: {shown} cannot stop the app: {why}"),
        );
        // The same rule for --drain-on, and --explain checks it too.
        refused_both_ways(
            "--drain-on",
            name,
            &["--explain"],
            &format!("--drain-on: {shown} cannot start a drain: {why}"),
        );
        refused_both_ways(
            "--stop-signal",
            name,
            &["--explain"],
            &format!("--stop-signal: {shown} cannot stop the app: {why}"),
        );
    }
    refused_both_ways(
        "--drain-on",
        "KILL",
        &["true"],
        "--drain-on: SIGKILL cannot start a drain: it cannot be caught, so it never reaches drainit",
    );
}

#[test]
fn a_kill_stop_signal_is_allowed_and_kills_the_app_after_the_delay() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let mut r = Drainit::new(mode)
            .args(&["--stop-signal", "KILL", "--drain-delay", "0.3s"])
            .args(&["--", "sh", "-c", "trap '' TERM; sleep 30 & wait"])
            .spawn();
        let _ = r.app_pid();
        let sent = std::time::Instant::now();
        r.signal(SIGTERM);
        let out = r.wait(secs(15.0));
        assert_eq!(out.code, Some(137), "{mode:?}: {}", out.stderr);
        assert!(sent.elapsed() >= secs(0.3), "not before the delay");
    }
}

#[test]
fn an_empty_variable_counts_as_unset() {
    let every = VARIABLES;
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        // One at a time (the common case: one templated away), then all at once.
        let sets: Vec<Vec<&str>> = every
            .iter()
            .map(|v| vec![*v])
            .chain([every.to_vec()])
            .collect();
        for set in sets {
            let mut d = Drainit::new(mode);
            for var in &set {
                d = d.env(var, "");
            }
            let out = d.args(&["sh", "-c", "exit 7"]).run(secs(10.0));
            assert_eq!(out.code, Some(7), "{mode:?} {set:?}: {}", out.stderr);
            assert_eq!(
                out.stderr_lines(),
                ["drainit: the app exited with code 7"],
                "{mode:?} {set:?}: as with nothing set"
            );
        }
    }
    // The health check too: an empty DRAINIT_TIMEOUT or DRAINIT_URL is no error.
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_TIMEOUT", "")
        .env("DRAINIT_URL", "")
        .env("DRAINIT_DRAIN_FILE", "")
        .arg("--healthcheck")
        .run(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

#[test]
fn control_bytes_never_split_a_refusal() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["--grace", "5\nx", "true"],
            "drainit: error: --grace: invalid duration '5\\nx': unknown unit '\\nx' (use ms, s, m or h)",
        ),
        (
            &["--stop-signal", "\u{1b}[31mTERM", "true"],
            "drainit: error: --stop-signal: unknown signal '\\u{1b}[31mTERM'",
        ),
        (
            &["--bo\ngus", "true"],
            "drainit: error: unexpected argument '--bo\\ngus' found",
        ),
        (
            &["--healthcheck", "a\rb"],
            "drainit: error: --healthcheck takes no COMMAND, got 'a\\rb'",
        ),
    ];
    for (args, want) in cases {
        let line = refusal(Drainit::new(Mode::Parent).args(args), &format!("{args:?}"));
        assert_eq!(line, want);
    }
    // Whatever the URL parser says about a URL, the URL comes out escaped.
    for by_env in [false, true] {
        let d = Drainit::new(Mode::Parent)
            .options(&[("--url", "ftp://a\nb/")], by_env)
            .arg("--healthcheck");
        let line = refusal(d, "--url");
        assert!(line.starts_with("drainit: error: --url: "), "{line}");
        assert!(line.contains("a\\nb"), "{line}");
    }
    // A logged name is escaped too.
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_TYPO\nX", "1")
        .args(&["sh", "-c", "exit 0"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(0));
    assert!(
        out.stderr_lines()
            .contains(&"drainit: warning: ignoring unknown variable DRAINIT_TYPO\\nX (see drainit --help for the DRAINIT_* variables)"),
        "{}",
        out.stderr
    );
}

#[test]
fn one_prefix_before_and_after_the_app_starts() {
    let before = refusal(
        Drainit::new(Mode::Parent).args(&["--grace", "soon", "true"]),
        "usage",
    );
    assert!(before.starts_with("drainit: error: "), "{before}");
    let out = Drainit::new(Mode::Parent)
        .arg("/nonexistent/command")
        .run(secs(10.0));
    assert_eq!(out.code, Some(127));
    assert!(out.stderr.starts_with("drainit: error: "), "{}", out.stderr);
    let line = refusal(
        Drainit::new(Mode::Parent)
            .env("DRAINIT_LOG", "verbose")
            .arg("true"),
        "DRAINIT_LOG",
    );
    assert_eq!(
        line,
        "drainit: error: DRAINIT_LOG: unknown level 'verbose' (use off, error, warn, info, debug or trace)"
    );
}
