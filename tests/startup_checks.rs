//! No silent misconfiguration: a drain file drainit could not write is
//! refused at start (not found out at the first drain); a mistyped DRAINIT_*
//! variable gets the nearest name; one start line says what is in effect;
//! run as `docker-init` or `tini`, drainit takes tini's flags and default
//! (signals to the app's pid only).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Exit 125, one line naming `--drain-file` (and the variable when it came
/// from one) and `names`, and the app never started.
fn assert_refused(d: Drainit, by_env: bool, names: &str, what: &str) {
    let dir = Scratch::new("refused");
    let started = dir.path("started");
    let out = d
        .args(&["sh", "-c", "touch \"$0\"", &dir.str("started")])
        .run(secs(20.0));
    assert_eq!(out.code, Some(125), "{what}: {}", out.stderr);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{what}: one line: {}", out.stderr);
    let line = lines[0];
    assert!(
        line.starts_with("drainit: error: --drain-file: cannot create "),
        "{what}: {line}"
    );
    assert!(line.contains(names), "{what}: names {names}: {line}");
    assert!(
        line.contains("not starting"),
        "{what}: says it stops: {line}"
    );
    assert_eq!(
        line.contains("(from DRAINIT_DRAIN_FILE)"),
        by_env,
        "{what}: {line}"
    );
    assert!(!started.exists(), "{what}: the app was started");
}

#[test]
fn a_drain_file_drainit_could_not_write_is_refused_at_start() {
    let dir = Scratch::new("unwritable");
    std::fs::write(dir.path("file"), "").unwrap();
    let fifo = dir.path("fifo");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let cases = [
        (
            dir.str("missing/draining"),
            "no such file or directory",
            "a directory that does not exist",
        ),
        (
            dir.str("file/draining"),
            "not a directory",
            "a regular file as the directory",
        ),
        (
            dir.str("fifo/draining"),
            "not a directory",
            "a FIFO as the directory (never opened, never blocks)",
        ),
    ];
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for (path, says, what) in &cases {
            for by_env in [false, true] {
                let d = Drainit::new(mode).options(
                    &[
                        ("--drain-file", path.as_str()),
                        ("--drain-delay", "5s"),
                        ("--stop-timeout", "30s"),
                    ],
                    by_env,
                );
                let what = format!("{mode:?} by_env={by_env} {what}");
                assert_refused(d, by_env, says, &what);
            }
        }
    }
    // Nothing was made anywhere.
    let mut names: Vec<String> = std::fs::read_dir(dir.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["fifo", "file"]);
}

/// drainit's user is the one that must be able to write there: root-owned
/// 0755 is not writable for nobody.
#[test]
fn the_check_is_made_as_drainits_user() {
    if !can_run(Mode::Pid1) {
        return; // needs root, for setpriv
    }
    let dir = Scratch::new("asnobody");
    std::fs::set_permissions(dir.path(""), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir(dir.path("root-only")).unwrap();
    std::fs::set_permissions(
        dir.path("root-only"),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = dir.str("root-only/draining");
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    let d = Drainit::new(Mode::Parent)
        .through(&nobody)
        .args(&["--drain-file", &path]);
    assert_refused(
        d,
        false,
        "permission denied (drainit runs as uid 65534)",
        "nobody",
    );
    // The same directory as root: fine, and the probe left nothing there.
    let out = Drainit::new(Mode::Parent)
        .args(&["--drain-file", &path, "true"])
        .run(secs(20.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        std::fs::read_dir(dir.path("root-only")).unwrap().count(),
        0,
        "the probe left a file behind"
    );
}

#[test]
fn explain_refuses_what_a_run_would_refuse() {
    let dir = Scratch::new("explain");
    let out = Drainit::new(Mode::Parent)
        .args(&["--explain", "--drain-file", &dir.str("missing/draining")])
        .run(secs(10.0));
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "explained anyway");
    assert!(
        out.stderr.contains("--drain-file: cannot create"),
        "{}",
        out.stderr
    );
    let out = Drainit::new(Mode::Parent)
        .args(&["--explain", "--drain-file", &dir.str("draining")])
        .run(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(&format!("ok: drainit can create {}", dir.str("draining"))),
        "{text}"
    );
}

#[test]
fn a_mistyped_variable_gets_the_nearest_name_and_the_start_line_says_no_drain() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let out = Drainit::new(mode)
            .env("DRAINIT_DRAIN_DELY", "10s")
            .args(&["sh", "-c", "exit 3"])
            .run(secs(10.0));
        assert_eq!(out.code, Some(3), "{mode:?}: {}", out.stderr);
        let lines = out.stderr_lines();
        assert!(
            lines.contains(
                &"drainit: warning: ignoring unknown variable DRAINIT_DRAIN_DELY: did you mean DRAINIT_DRAIN_DELAY? (see drainit --help for the DRAINIT_* variables)"
            ),
            "{mode:?}: {lines:?}"
        );
        assert!(
            lines.contains(&format!(
                "drainit: version {}: no drain (no drain option set): SIGTERM is passed on at once; signals to the app's process group",
                env!("CARGO_PKG_VERSION")
            ).as_str()),
            "{mode:?}: {lines:?}"
        );
    }
}

#[test]
fn the_start_line_says_what_is_in_effect() {
    let dir = Scratch::new("startline");
    let drain_file = dir.str("draining");
    let version = env!("CARGO_PKG_VERSION");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let cases: [(&[(&str, &str)], String); 3] = [
        (
            &[
                ("--drain-file", &drain_file),
                ("--drain-delay", "10s"),
                ("--stop-timeout", "30s"),
                ("--health-listen", &listen),
            ],
            format!(
                "drainit: version {version}: drain on SIGTERM: drain file {drain_file}, delay 10s, stop signal as received, SIGKILL at t+29s (--stop-timeout 30s minus 1s); health listener {listen}; signals to the app's process group"
            ),
        ),
        (
            &[
                ("--drain-delay", "2s"),
                ("--stop-signal", "QUIT"),
                ("--no-group", "1"),
            ],
            format!(
                "drainit: version {version}: drain on SIGTERM: no drain file, delay 2s, stop signal SIGQUIT, no kill deadline (set --stop-timeout to the orchestrator's); signals to the app's pid only"
            ),
        ),
        (
            &[("--kill-after", "20s"), ("--drain-on", "TERM,USR2")],
            format!(
                "drainit: version {version}: drain on SIGUSR2,SIGTERM: no drain file, delay 0s, stop signal as received, SIGKILL at t+20s; signals to the app's process group"
            ),
        ),
    ];
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for (options, line) in &cases {
            // Flags for PID 1, variables for a plain parent; --no-group is a
            // switch: its variable takes 1, the flag nothing.
            let by_env = mode == Mode::Parent;
            let mut d = Drainit::new(mode);
            for (option, value) in options.iter() {
                if *option == "--no-group" && !by_env {
                    d = d.arg("--no-group");
                } else {
                    d = d.options(&[(option, value)], by_env);
                }
            }
            let out = d.args(&["sh", "-c", "exit 0"]).run(secs(20.0));
            assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
            let lines = out.stderr_lines();
            assert_eq!(
                lines.first().copied(),
                Some(line.as_str()),
                "{mode:?}: the first line: {lines:?}"
            );
            assert_eq!(
                lines.iter().filter(|l| l.contains("version")).count(),
                1,
                "{mode:?}: once: {lines:?}"
            );
        }
    }
    // -q (warnings only) keeps it out.
    let out = Drainit::new(Mode::Parent)
        .args(&["-q", "--drain-delay", "1s", "true"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(0));
    assert!(out.stderr.is_empty(), "{}", out.stderr);
}

/// A shell app that logs `app` on SIGUSR1, with a child in its process group
/// that logs `grandchild`; both exit on SIGTERM.
const FAMILY: &str = r#"
log=$1; ready=$2
( trap 'echo grandchild >> "$log"' USR1; trap 'exit 0' TERM
  : > "$ready.child"; while :; do sleep 0.05; done ) &
child=$!
trap 'echo app >> "$log"' USR1
trap 'kill $child 2>/dev/null; exit 0' TERM
echo $$ > "$ready.tmp"; mv "$ready.tmp" "$ready"
while :; do sleep 0.05; done
"#;

/// drainit run as `argv0` (through `bash -c 'exec -a'`, so the process is
/// still the drainit binary), as PID 1, with `args` and `env`: after a
/// SIGUSR1 to drainit, the app gets it once, and its group too if `group`.
fn usr1_reaches(argv0: &str, args: &[&str], env: &[(&str, &str)], group: bool) {
    let dir = Scratch::new("tini");
    let (log, ready) = (dir.path("log"), dir.path("ready"));
    let mut d = Drainit::new(Mode::Pid1).through(&[
        "bash",
        "-c",
        &format!("exec -a {argv0} \"$0\" \"$@\""),
    ]);
    for (k, v) in env {
        d = d.env(k, v);
    }
    let mut r = d
        .args(args)
        .args(&[
            "sh",
            "-c",
            FAMILY,
            "family",
            &dir.str("log"),
            &dir.str("ready"),
        ])
        .spawn();
    r.ready(&ready);
    let what = format!("{argv0} {args:?} {env:?}");
    assert!(
        wait_for_file(Path::new(&format!("{}.child", ready.display())), secs(10.0)),
        "{what}: the app's child never started"
    );
    r.signal(SIGUSR1);
    wait_for_line(&log, "app", secs(10.0));
    if group {
        wait_for_line(&log, "grandchild", secs(10.0));
    } else {
        // The group would get it in the same kill(2) as the app: a grandchild
        // that has not logged a second after the app did never got it.
        std::thread::sleep(secs(1.0));
        assert!(
            !lines(&log).iter().any(|l| l == "grandchild"),
            "{what}: the app's group got SIGUSR1 too"
        );
    }
    r.signal(SIGTERM);
    let out = r.wait(secs(20.0));
    assert_eq!(out.code, Some(0), "{what}: {}", out.stderr);
    assert_eq!(
        lines(&log).iter().filter(|l| *l == "app").count(),
        1,
        "{what}: the app got SIGUSR1 once: {:?}",
        lines(&log)
    );
}

#[test]
fn as_docker_init_or_tini_signals_go_to_the_app_only_unless_asked() {
    if !can_run(Mode::Pid1) {
        return;
    }
    // tini's default: the app's pid only.
    usr1_reaches("/sbin/docker-init", &["--"], &[], false);
    usr1_reaches("tini", &["-s", "--"], &[], false);
    // tini -g, its variable, or drainit's own: the group.
    usr1_reaches("/tini", &["-g", "--"], &[], true);
    usr1_reaches(
        "/sbin/docker-init",
        &["--"],
        &[("TINI_KILL_PROCESS_GROUP", "1")],
        true,
    );
    usr1_reaches(
        "/sbin/docker-init",
        &["--"],
        &[("DRAINIT_NO_GROUP", "0")],
        true,
    );
    // Under its own name, drainit signals the group, as ever.
    usr1_reaches("drainit", &["--"], &[], true);
}

#[test]
fn as_tini_its_flags_are_read_and_the_unsupported_ones_named() {
    let as_tini = |args: &[&str]| {
        Drainit::new(Mode::Parent)
            .through(&["bash", "-c", "exec -a tini \"$0\" \"$@\""])
            .args(args)
            .run(secs(10.0))
    };
    // -e CODE: tini's --success-exit.
    let out = as_tini(&["-s", "-e", "143", "--", "sh", "-c", "exit 143"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let out = as_tini(&["-e", "143", "--", "sh", "-c", "exit 3"]);
    assert_eq!(out.code, Some(3), "{}", out.stderr);
    // -p and -l are not drainit's: one line naming the flag.
    for flag in ["-p", "-l"] {
        let out = as_tini(&[flag, "SIGTERM", "--", "true"]);
        assert_eq!(out.code, Some(125), "{flag}: {}", out.stderr);
        assert_eq!(out.stderr_lines().len(), 1, "{}", out.stderr);
        assert!(
            out.stderr
                .starts_with(&format!("drainit: error: {flag}: tini's")),
            "{}",
            out.stderr
        );
    }
    // drainit's own options work under tini's names.
    let out = as_tini(&["--version"]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        format!("drainit {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn a_mistyped_option_gets_the_nearest_name() {
    for (typed, line) in [
        (
            "--drain-dely",
            "drainit: error: unexpected argument '--drain-dely' found; did you mean --drain-delay?",
        ),
        (
            "--stop-timout=30s",
            "drainit: error: unexpected argument '--stop-timout' found; did you mean --stop-timeout?",
        ),
        (
            "--nothing-like-it",
            "drainit: error: unexpected argument '--nothing-like-it' found",
        ),
    ] {
        let dir = Scratch::new("typo");
        let out = Drainit::new(Mode::Parent)
            .args(&[typed, "5s", "touch", &dir.str("started")])
            .run(secs(10.0));
        out.assert_error(125, line, typed);
        assert!(
            !dir.path("started").exists(),
            "{typed}: the app was started"
        );
    }
}
