//! `--success-exit CODES` (`DRAINIT_SUCCESS_EXIT`): the app's listed exit
//! codes become 0, logged as such; drainit's own codes never do; a bad list
//! is refused with one line naming the option or the variable, exit 125.
//! As PID 1 and as a plain parent, by flag and by variable.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

const WAYS: [bool; 2] = [false, true]; // by flag, by variable

fn named(by_env: bool) -> &'static str {
    if by_env {
        "DRAINIT_SUCCESS_EXIT"
    } else {
        "--success-exit"
    }
}

#[test]
fn a_listed_code_of_the_app_becomes_0_and_is_logged() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for by_env in WAYS {
            for (script, code, want) in [
                ("kill -TERM $$", 143, 0),
                ("exit 130", 130, 0),
                ("exit 3", 3, 3),
                ("exit 0", 0, 0),
            ] {
                let out = Drainit::new(mode)
                    .options(&[("--success-exit", "143, 130")], by_env)
                    .args(&["sh", "-c", script])
                    .run(secs(20.0));
                let ctx = format!("{mode:?} by_env={by_env} {script:?}: {}", out.stderr);
                assert_eq!(out.code, Some(want), "{ctx}");
                let line = format!(
                    "drainit: the app's exit code {code} counts as success ({}): exiting 0",
                    named(by_env)
                );
                if want == code {
                    assert!(!out.stderr.contains("counts as success"), "{ctx}");
                } else {
                    assert!(out.stderr_lines().contains(&line.as_str()), "{ctx}");
                }
            }
        }
    }
}

/// The case the option is for: an app that dies of the drain's SIGTERM
/// (a JVM exits 143) ends a clean stop with exit code 0.
/// Runs `sh -c SCRIPT` under `d` (SCRIPT touches `{ready}` once set up),
/// sends drainit SIGTERM once it has, and returns how the run ended.
fn stopped_once_ready(d: Drainit, name: &str, script: &str) -> Outcome {
    let dir = Scratch::new(name);
    let ready = dir.path("ready");
    let script = script.replace("{ready}", &ready.display().to_string());
    let mut running = d.args(&["sh", "-c", &script]).spawn();
    assert!(
        wait_for_file(&ready, secs(15.0)),
        "{name}: {}",
        running.stderr()
    );
    running.pid();
    running.signal(SIGTERM);
    running.wait(secs(20.0))
}

#[test]
fn an_app_killed_by_the_drains_sigterm_exits_0() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let d = Drainit::new(mode)
            .env("DRAINIT_DRAIN_DELAY", "0.2s")
            .env("DRAINIT_SUCCESS_EXIT", "143");
        let out = stopped_once_ready(d, "success-exit-drain", "touch {ready}; exec sleep 60");
        let ctx = format!("{mode:?}: {}", out.stderr);
        assert_eq!(out.code, Some(0), "{ctx}");
        assert!(out.stderr.contains("killed by SIGTERM (code 143)"), "{ctx}");
        assert!(
            out.stderr.contains(
                "the app's exit code 143 counts as success (DRAINIT_SUCCESS_EXIT): exiting 0"
            ),
            "{ctx}"
        );
    }
}

/// The kill deadline's 137 and a command that cannot run stay failures,
/// whatever the list holds.
#[test]
fn drainits_own_codes_are_never_turned() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let d = Drainit::new(mode).args(&["--success-exit", "143,1,2,128", "--kill-after", "0.5s"]);
        // The ignored SIGTERM is inherited by every sleep: only SIGKILL ends it.
        let script = "trap '' TERM; touch {ready}; while :; do sleep 0.1; done";
        let out = stopped_once_ready(d, "success-exit-kill", script);
        assert_eq!(out.code, Some(137), "{mode:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("kill deadline reached"),
            "{}",
            out.stderr
        );
        assert!(!out.stderr.contains("counts as success"), "{}", out.stderr);

        let out = Drainit::new(mode)
            .args(&["--success-exit", "143", "no-such-command-xyz"])
            .run(secs(20.0));
        assert_eq!(out.code, Some(127), "{mode:?}: {}", out.stderr);
        assert!(!out.stderr.contains("counts as success"), "{}", out.stderr);
    }
}

#[test]
fn a_bad_list_exits_125_with_one_line_naming_the_option_or_variable() {
    let dir = Scratch::new("success-exit-bad");
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for by_env in WAYS {
            for (value, says) in [
                ("256", "'256' is not an exit code (0-255)"),
                ("-1", "'-1' is not an exit code"),
                ("+1", "'+1' is not an exit code"),
                ("99999999999999999999999", "is not an exit code"),
                ("143,,130", "separated by commas"),
                ("143,", "separated by commas"),
                ("SIGTERM", "'SIGTERM' is not an exit code"),
                ("143;130", "is not an exit code"),
                ("125", "125 is drainit's own exit code"),
                ("126", "126 is drainit's own exit code"),
                ("143,127", "127 is drainit's own exit code"),
                ("137", "137 is a SIGKILL"),
            ] {
                let marker = dir.path("started");
                let out = Drainit::new(mode)
                    .options(&[("--success-exit", value)], by_env)
                    .args(&["touch", marker.to_str().unwrap()])
                    .run(secs(20.0));
                let ctx = format!("{mode:?} by_env={by_env} {value:?}: {}", out.stderr);
                assert_eq!(out.code, Some(125), "{ctx}");
                assert_eq!(out.stderr.lines().count(), 1, "one line: {ctx}");
                assert!(out.stderr.starts_with("drainit: "), "{ctx}");
                assert!(out.stderr.contains(named(by_env)), "names it: {ctx}");
                assert!(out.stderr.contains(says), "says why: {ctx}");
                assert!(!marker.exists(), "the app was started: {ctx}");
            }
        }
    }
}

#[test]
fn a_value_that_is_not_utf8_is_refused() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let out = Drainit::new(Mode::Parent)
        .through(&[
            OsStr::new("env"),
            OsStr::from_bytes(b"DRAINIT_SUCCESS_EXIT=143,\xff"),
        ])
        .arg("true")
        .run(secs(20.0));
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("DRAINIT_SUCCESS_EXIT"),
        "{}",
        out.stderr
    );
}

/// A hostile or generated list: long (close to the kernel's 128 KiB cap on
/// one variable) and full of repeats, it still parses quickly and works.
#[test]
fn a_huge_list_is_fine() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let list = format!("{}130", "143, ".repeat(25_000));
        let out = Drainit::new(mode)
            .env("DRAINIT_SUCCESS_EXIT", &list)
            .args(&["sh", "-c", "exit 130"])
            .run(secs(20.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        let out = Drainit::new(mode)
            .env("DRAINIT_SUCCESS_EXIT", &format!("{list},1000"))
            .arg("true")
            .run(secs(20.0));
        assert_eq!(out.code, Some(125), "{mode:?}: {}", out.stderr);
        assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
        assert!(
            out.stderr.len() < 1000,
            "the line does not echo the whole list: {} bytes",
            out.stderr.len()
        );
    }
}

#[test]
fn help_names_the_option_and_its_variable() {
    let out = Drainit::new(Mode::Parent).arg("--help").run(secs(10.0));
    assert_eq!(out.code, Some(0));
    let help = String::from_utf8(out.stdout).unwrap();
    assert!(help.contains("--success-exit <CODES>"), "{help}");
    assert!(help.contains("DRAINIT_SUCCESS_EXIT"), "{help}");
}
