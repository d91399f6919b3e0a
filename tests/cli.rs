//! The command line: --help and --version on stdout, every option's
//! DRAINIT_* variable, bad values named on one line with exit 125.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

#[test]
fn help_lists_every_option_with_its_variable() {
    let out = Drainit::new(Mode::Parent).arg("--help").run(secs(10.0));
    assert_eq!(out.code, Some(0));
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    let help = String::from_utf8(out.stdout).unwrap();
    for var in VARIABLES {
        assert!(help.contains(var), "--help lacks {var}");
    }
    for code in ["125", "126", "127", "128+N"] {
        assert!(help.contains(code), "--help lacks exit code {code}");
    }
}

#[test]
fn version_prints_on_stdout() {
    let out = Drainit::new(Mode::Parent).arg("--version").run(secs(10.0));
    assert_eq!(out.code, Some(0));
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("drainit {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_bad_variable_is_named() {
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_GRACE", "forever")
        .arg("true")
        .run(secs(10.0));
    assert_eq!(out.code, Some(125));
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("DRAINIT_GRACE") && out.stderr.contains("forever"),
        "{}",
        out.stderr
    );
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_NO_GROUP", "maybe")
        .arg("true")
        .run(secs(10.0));
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    assert!(out.stderr.contains("maybe"), "{}", out.stderr);
}

#[test]
fn no_group_from_flag_or_variable_keeps_the_app_in_drainits_group() {
    let dir = Scratch::new("nogroup");
    for (flag, env) in [(true, false), (false, true), (false, false)] {
        let ready = dir.path(&format!("ready-{flag}-{env}"));
        let mut d = Drainit::new(Mode::Parent);
        if flag {
            d = d.arg("--no-group");
        }
        if env {
            d = d.env("DRAINIT_NO_GROUP", "1");
        }
        let mut r = d.app(&["--ready", ready.to_str().unwrap()]).spawn();
        let app = r.ready(&ready);
        let drainit = r.pid();
        if flag || env {
            assert_eq!(
                pgrp(app),
                pgrp(drainit),
                "--no-group: the app stays in drainit's group"
            );
        } else {
            assert_eq!(pgrp(app), Some(app), "the app leads a group of its own");
        }
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(0));
    }
}

#[test]
fn verbose_and_quiet_change_what_is_logged() {
    let debug = |e: &str| e.contains("drainit: debug: started");
    let silent = |e: &str| e.is_empty();
    let default = |e: &str| e.lines().eq(["drainit: the app exited with code 4"]);
    let cases = [
        (
            Drainit::new(Mode::Parent).arg("-v"),
            &debug as &dyn Fn(&str) -> bool,
        ),
        (
            Drainit::new(Mode::Parent).env("DRAINIT_VERBOSE", "true"),
            &debug,
        ),
        (Drainit::new(Mode::Parent).arg("-q"), &silent),
        (
            Drainit::new(Mode::Parent).env("DRAINIT_LOG", "warn"),
            &silent,
        ),
        (Drainit::new(Mode::Parent), &default),
    ];
    for (i, (d, wanted)) in cases.into_iter().enumerate() {
        let out = d.args(&["sh", "-c", "exit 4"]).run(secs(10.0));
        assert_eq!(out.code, Some(4));
        assert!(wanted(&out.stderr), "case {i}: {}", out.stderr);
    }
}

#[test]
fn an_unknown_variable_is_warned_about_but_does_not_stop_the_app() {
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_DRAIN_DELAYS", "15s")
        .args(&["sh", "-c", "exit 5"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(5));
    assert!(
        out.stderr
            .contains("warning: ignoring unknown variable DRAINIT_DRAIN_DELAYS"),
        "{}",
        out.stderr
    );
}
