//! A tight stack limit (`ulimit -s 16`, `prlimit --stack`) does not kill
//! drainit: it runs on a stack of its own, so it starts, drains and exits
//! with the app's code wherever its exec fits (tini needs 16 KiB). The app
//! gets the limit it was started with.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

/// Limits to run under, in KiB: tini's floor, and what the start-up once needed.
const LIMITS: [u32; 3] = [16, 32, 48];

/// Traps SIGTERM (exit 7) and waits; writes `ready` (its pid) and, in
/// `limit`, the stack limit it was started with. Then it lifts the limit
/// (the hard one is unlimited): the kernel's random stack offset leaves a
/// dynamically linked program started under 16 KiB too little room at times,
/// and this test is about drainit, not about `sleep`.
const APP: &str = r#"trap 'exit 7' TERM
ulimit -s > "$2"
ulimit -s unlimited
echo $$ > "$1.tmp" && mv "$1.tmp" "$1"
sleep 1000 &
wait"#;

/// `env -i ... prlimit` before drainit: a fixed, small environment (it sits on
/// the stack too), and a soft stack limit of `kib` KiB.
fn limited(kib: u32) -> Vec<String> {
    vec![
        "env".into(),
        "-i".into(),
        "PATH=/usr/bin:/bin".into(),
        "prlimit".into(),
        format!("--stack={}:unlimited", kib * 1024),
    ]
}

#[test]
fn drainit_drains_and_exits_with_the_apps_code_under_a_tight_stack_limit() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for kib in LIMITS {
            let dir = Scratch::new("stack");
            let mut r = Drainit::new(mode)
                .through(&limited(kib))
                .args(&[
                    "--drain-file",
                    &dir.str("drain"),
                    "--drain-delay",
                    "300ms",
                    "--",
                    "sh",
                    "-c",
                    APP,
                    "app",
                    &dir.str("ready"),
                    &dir.str("limit"),
                ])
                .spawn();
            r.ready(&dir.path("ready"));
            let sent = r.signal(SIGTERM);
            let out = r.wait(secs(20.0));
            let what = format!("{mode:?}, stack limit {kib} KiB");
            assert_eq!(out.code, Some(7), "{what}: {}", out.stderr);
            assert!(
                out.elapsed >= sent + secs(0.3),
                "{what}: the drain delay was cut short ({:?})",
                out.elapsed - sent
            );
            assert!(dir.path("drain").exists(), "{what}: no drain file");
            // The app got the limit drainit was started with, not drainit's own stack.
            assert_eq!(lines(&dir.path("limit")), [kib.to_string()], "{what}");
        }
    }
}

#[test]
fn the_other_modes_run_under_a_tight_stack_limit_too() {
    let dir = Scratch::new("stack-modes");
    let limited = |args: &[&str]| {
        Drainit::new(Mode::Parent)
            .through(&limited(16))
            .args(args)
            .run(secs(20.0))
    };
    // clap renders the help: the largest frames drainit has.
    let out = limited(&["--help"]);
    assert_eq!(out.code, Some(0), "--help: {}", out.stderr);
    assert!(String::from_utf8_lossy(&out.stdout).contains("--drain-file"));
    let out = limited(&["--explain", "--drain-delay", "5s", "--", "true"]);
    assert_eq!(out.code, Some(0), "--explain: {}", out.stderr);
    // Refusals still print their one line and exit 125.
    let out = limited(&["--drain-delay", "soon", "--", "true"]);
    assert_eq!(out.code, Some(125), "bad input: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    let out = limited(&["--healthcheck", "--drain-file", &dir.str("absent")]);
    assert_eq!(out.code, Some(0), "--healthcheck: {}", out.stderr);
}

#[test]
fn no_memory_for_its_own_stack_is_refused_with_one_line() {
    // drainit's address space at an ordinary stack limit, idle.
    let s = Scratch::new("stack-as");
    let mut r = Drainit::new(Mode::Parent)
        .through(&["env", "-i", "PATH=/usr/bin:/bin"])
        .args(&[
            "--",
            "sh",
            "-c",
            "echo > \"$0\"; exec sleep 1000",
            &s.str("ready"),
        ])
        .spawn();
    assert!(wait_for_file(&s.path("ready"), secs(15.0)));
    let vm_kib: u64 = status_field(r.pid(), "VmSize")
        .unwrap()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    r.signal(SIGKILL);
    // Room for drainit's exec (its stack mapping shrinks with the limit), not
    // for the 256 KiB stack it maps under a small stack limit.
    let out = Drainit::new(Mode::Parent)
        .through(&[
            "env",
            "-i",
            "PATH=/usr/bin:/bin",
            "prlimit",
            "--stack=16384",
            &format!("--as={}", (vm_kib + 64) * 1024),
        ])
        .args(&["--", "true"])
        .run(secs(20.0));
    let line = out.stderr.trim_end();
    assert_eq!(out.code, Some(125), "VmSize {vm_kib} kB: {}", out.stderr);
    assert_eq!(out.stderr.lines().count(), 1, "{}", out.stderr);
    assert!(
        line.starts_with(
            "drainit: error: cannot map a stack of its own (the stack limit is under 256 KiB): "
        ),
        "{line}"
    );
}
