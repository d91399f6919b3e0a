//! The drain: drain file at once, the app keeps serving for the delay, then
//! the stop signal, then SIGKILL at the kill deadline (before the
//! orchestrator's), all from flags or DRAINIT_* variables, as PID 1.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::time::Duration;

/// A PID-1 drainit with the fixture app, configured by `config` (flags, or
/// variables when `by_env`), started and ready.
struct Drain {
    run: Running,
    dir: Scratch,
    app: i32,
}

fn start(config: &[(&str, &str)], by_env: bool, app_args: &[&str]) -> Option<Drain> {
    if !can_run(Mode::Pid1) {
        return None;
    }
    let dir = Scratch::new("drain");
    let config: Vec<(&str, String)> = config
        .iter()
        .map(|(o, v)| (*o, v.replace("{dir}", &dir.str(""))))
        .collect();
    let config: Vec<(&str, &str)> = config.iter().map(|(o, v)| (*o, v.as_str())).collect();
    let d = Drainit::new(Mode::Pid1).options(&config, by_env);
    let mut args = vec![
        "--ready".to_string(),
        dir.str("ready"),
        "--log".to_string(),
        dir.str("log"),
    ];
    args.extend(app_args.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = d.app(&args).spawn();
    let app = run.ready(&dir.path("ready"));
    Some(Drain { run, dir, app })
}

/// Time from `since` until the fixture has logged `line`.
fn time_to_line(d: &Drain, line: &str, since: Duration, timeout: Duration) -> Duration {
    wait_for_line(&d.dir.path("log"), line, timeout);
    d.run.elapsed() - since
}

#[test]
fn drain_file_appears_at_once_and_a_stale_one_is_removed_at_start() {
    let dir = Scratch::new("stale");
    let file = dir.path("draining");
    // As drainit wrote it on an earlier run (tests/drain_file.rs: only such a file).
    std::fs::write(
        &file,
        "signal=SIGTERM\ntime=2026-11-22T08:00:00.000Z\nwritten-by=drainit\n",
    )
    .unwrap();
    if !can_run(Mode::Pid1) {
        return;
    }
    let mut r = Drainit::new(Mode::Pid1)
        .args(&["--drain-file", &dir.str("draining"), "--drain-delay", "3s"])
        .app(&["--ready", &dir.str("ready")])
        .spawn();
    r.ready(&dir.path("ready"));
    assert!(!file.exists(), "the stale drain file is removed at start");
    let sent = r.signal(SIGTERM);
    assert!(wait_for_file(&file, secs(5.0)));
    let took = r.elapsed() - sent;
    assert!(took < secs(0.5), "drain file after {took:?}");
    let content = std::fs::read_to_string(&file).unwrap();
    assert!(content.starts_with("signal=SIGTERM\ntime=20"), "{content}");
    let out = r.wait(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("SIGTERM received: drain started; drain file"),
        "{}",
        out.stderr
    );
}

#[test]
fn the_stop_signal_comes_no_earlier_than_the_delay() {
    for by_env in [false, true] {
        let config = [
            ("--drain-file", "{dir}/draining"),
            ("--drain-delay", "1500ms"),
            ("--stop-signal", "QUIT"),
        ];
        let Some(mut d) = start(&config, by_env, &["--stop-signal", "QUIT"]) else {
            return;
        };
        let sent = d.run.signal(SIGTERM);
        assert!(
            wait_for_file(&d.dir.path("draining"), secs(5.0)),
            "by_env={by_env}: drain file"
        );
        let took = time_to_line(&d, "SIGQUIT", sent, secs(10.0));
        assert!(
            took >= secs(1.5),
            "by_env={by_env}: stop signal after {took:?}, before the delay"
        );
        assert!(
            took < secs(4.0),
            "by_env={by_env}: stop signal after {took:?}"
        );
        let out = d.run.wait(secs(10.0));
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        // The app got QUIT (and SIGCONT), never SIGTERM.
        assert_eq!(
            log_lines(&d.dir.path("log")),
            ["SIGQUIT"],
            "by_env={by_env}"
        );
    }
}

#[test]
fn sigkill_at_kill_after_takes_grandchildren_too() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("killafter");
    // The app (a shell) and a grandchild in its group both ignore SIGTERM.
    let script = format!(
        "trap '' TERM; python3 {} --ready {} --on-term ignore & wait; wait",
        app(),
        dir.str("ready")
    );
    let mut r = Drainit::new(Mode::Pid1)
        .args(&["--kill-after", "2s", "sh", "-c", &script])
        .spawn();
    let grandchild = r.ready(&dir.path("ready"));
    let sent = r.signal(SIGTERM);
    let out = r.wait(secs(15.0));
    let took = out.elapsed - sent;
    assert_eq!(out.code, Some(137), "{}", out.stderr);
    assert!(
        took >= secs(2.0) && took < secs(3.0),
        "SIGKILL after {took:?}, want 2s ± 1s (never early)"
    );
    assert!(!running(grandchild), "the grandchild survived");
    assert!(
        out.stderr
            .contains("t+2.0s: kill deadline reached: SIGKILL"),
        "{}",
        out.stderr
    );
}

#[test]
fn escalation_comes_strictly_before_the_stop_timeout() {
    for by_env in [false, true] {
        let Some(mut d) = start(
            &[("--stop-timeout", "3s")],
            by_env,
            &["--on-term", "ignore"],
        ) else {
            return;
        };
        let sent = d.run.signal(SIGTERM);
        let app = d.app;
        let out = d.run.wait(secs(15.0));
        let took = out.elapsed - sent;
        assert_eq!(out.code, Some(137), "{}", out.stderr);
        assert!(
            took >= secs(2.0),
            "by_env={by_env}: killed after {took:?}, before stop-timeout − 1s"
        );
        assert!(
            took < secs(3.0),
            "by_env={by_env}: killed after {took:?}, not before the orchestrator"
        );
        assert!(!running(app));
    }
}

#[test]
fn a_second_sigterm_or_a_sigint_cuts_the_delay_short() {
    for cut in [SIGTERM, SIGINT] {
        let config = [
            ("--drain-file", "{dir}/draining"),
            ("--drain-delay", "10s"),
            ("--kill-after", "20s"),
        ];
        let Some(mut d) = start(&config, false, &[]) else {
            return;
        };
        d.run.signal(SIGTERM);
        assert!(wait_for_file(&d.dir.path("draining"), secs(5.0)));
        let sent = d.run.signal(cut);
        let took = time_to_line(&d, "SIGTERM", sent, secs(5.0));
        assert!(
            took < secs(2.0),
            "signal {cut}: the delay was not cut short ({took:?})"
        );
        let out = d.run.wait(secs(10.0));
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        // One stop signal: no second SIGTERM, and the SIGINT is not passed on.
        assert_eq!(log_lines(&d.dir.path("log")), ["SIGTERM"], "signal {cut}");
        assert!(
            out.stderr.contains("drain delay cut short"),
            "{}",
            out.stderr
        );
    }
}

#[test]
fn an_app_exiting_during_the_delay_ends_drainit_at_once() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("early");
    // The app exits during the delay: once the drain file is there.
    let script = format!(
        "touch {}; while [ ! -e {draining} ]; do sleep 0.01; done; exit 7",
        dir.str("ready"),
        draining = dir.str("draining")
    );
    let mut r = Drainit::new(Mode::Pid1)
        .args(&[
            "--drain-file",
            &dir.str("draining"),
            "--drain-delay",
            "20s",
            "sh",
            "-c",
            &script,
        ])
        .spawn();
    assert!(wait_for_file(&dir.path("ready"), secs(10.0)));
    let sent = r.signal(SIGTERM);
    let out = r.wait(secs(10.0));
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    assert!(
        out.elapsed - sent < secs(5.0),
        "drainit waited out the delay: {:?}",
        out.elapsed - sent
    );
}

#[test]
fn other_signals_never_start_a_drain_unless_named() {
    let config = [("--drain-file", "{dir}/draining"), ("--drain-delay", "10s")];
    let Some(mut d) = start(&config, false, &[]) else {
        return;
    };
    for (signal, name) in [
        (SIGUSR1, "SIGUSR1"),
        (SIGHUP, "SIGHUP"),
        (SIGQUIT, "SIGQUIT"),
        (SIGINT, "SIGINT"),
    ] {
        d.run.signal(signal);
        wait_for_line(&d.dir.path("log"), name, secs(5.0));
        assert!(!d.dir.path("draining").exists(), "{name} started a drain");
    }
    d.run.signal(SIGTERM);
    assert!(wait_for_file(&d.dir.path("draining"), secs(5.0)));
    d.run.signal(SIGTERM);
    assert_eq!(d.run.wait(secs(10.0)).code, Some(0));

    // Named in --drain-on, USR2 starts it.
    let config = [
        ("--drain-file", "{dir}/draining"),
        ("--drain-delay", "10s"),
        ("--drain-on", "USR2,TERM"),
    ];
    let Some(mut d) = start(&config, true, &["--stop-signal", "USR2"]) else {
        return;
    };
    d.run.signal(SIGUSR2);
    assert!(
        wait_for_file(&d.dir.path("draining"), secs(5.0)),
        "USR2 did not start the drain"
    );
    assert!(
        lines(&d.dir.path("log")).is_empty(),
        "the drain signal itself is not passed on during the delay"
    );
    // TERM, a drain signal too, cuts the delay short: the stop signal is the
    // one that started the drain.
    d.run.signal(SIGTERM);
    assert_eq!(d.run.wait(secs(10.0)).code, Some(0));
    assert_eq!(log_lines(&d.dir.path("log")), ["SIGUSR2"]);
}

/// A directory that takes files at start (checked: see startup_checks.rs)
/// and is gone by the drain: named in a warning, and the drain goes on.
#[test]
fn an_unwritable_drain_file_is_named_and_the_drain_goes_on() {
    let gone = std::env::temp_dir().join(format!("drainit-gone-{}", std::process::id()));
    std::fs::create_dir_all(&gone).unwrap();
    let path = gone.join("draining").to_string_lossy().into_owned();
    let config = [("--drain-file", path.as_str()), ("--drain-delay", "500ms")];
    let Some(mut d) = start(&config, false, &[]) else {
        let _ = std::fs::remove_dir(&gone);
        return;
    };
    std::fs::remove_dir(&gone).unwrap();
    let sent = d.run.signal(SIGTERM);
    let took = time_to_line(&d, "SIGTERM", sent, secs(10.0));
    assert!(took >= secs(0.5), "{took:?}");
    let out = d.run.wait(secs(10.0));
    assert_eq!(out.code, Some(0));
    assert!(
        out.stderr
            .contains(&format!("warning: cannot write drain file {path}")),
        "{}",
        out.stderr
    );
}

#[test]
fn every_validation_error_exits_125_naming_the_options() {
    type Options<'a> = &'a [(&'a str, &'a str)];
    let cases: &[(Options, &[&str])] = &[
        (
            &[("--drain-delay", "30s"), ("--kill-after", "30s")],
            &["--drain-delay", "--kill-after"],
        ),
        (
            &[("--drain-delay", "40s"), ("--stop-timeout", "30s")],
            &["--drain-delay", "--stop-timeout"],
        ),
        (
            &[("--kill-after", "30s"), ("--stop-timeout", "30s")],
            &["--kill-after", "--stop-timeout"],
        ),
        (
            &[("--stop-signal", "SIGNOPE")],
            &["--stop-signal", "SIGNOPE"],
        ),
        (&[("--drain-on", "TERM,NOPE")], &["--drain-on", "NOPE"]),
        (
            &[("--drain-delay", "5 years")],
            &["--drain-delay", "5 years"],
        ),
        (&[("--kill-after", "-3s")], &["--kill-after", "-3s"]),
        (&[("--stop-timeout", "soon")], &["--stop-timeout", "soon"]),
    ];
    for (config, names) in cases {
        for by_env in [false, true] {
            let d = Drainit::new(Mode::Parent).options(config, by_env);
            let out = d
                .args(&["--", "touch", "/tmp/drainit-must-not-run"])
                .run(secs(10.0));
            assert_eq!(
                out.code,
                Some(125),
                "{config:?} by_env={by_env}: {}",
                out.stderr
            );
            assert_eq!(
                out.stderr.lines().count(),
                1,
                "{config:?}: one line: {}",
                out.stderr
            );
            for name in *names {
                assert!(
                    out.stderr.contains(name),
                    "{config:?} by_env={by_env}: '{}' lacks {name}",
                    out.stderr
                );
            }
        }
    }
    assert!(!std::path::Path::new("/tmp/drainit-must-not-run").exists());
}
