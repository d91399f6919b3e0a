//! The app starts exactly as drainit was started: the same blocked and
//! ignored signals, its arguments byte for byte, stdin and stdout passed
//! through, and none of drainit's own descriptors.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::os::unix::ffi::OsStrExt;

/// Starts drainit with USR1, USR2 and real-time 40 and 33 blocked and HUP,
/// QUIT and 35 ignored (Python also ignores PIPE and XFSZ), writing the
/// launcher's own SigBlk/SigIgn to `expect` just before exec.
const LAUNCHER: &str = r#"
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, signal.SIGUSR2, 40})
for s in (signal.SIGHUP, signal.SIGQUIT, 35):
    signal.signal(s, signal.SIG_IGN)
with open(sys.argv[1], "w") as f:
    f.write("".join(l for l in open("/proc/self/status") if l.startswith(("SigBlk", "SigIgn"))))
os.execv(sys.argv[2], sys.argv[2:])
"#;

#[test]
fn the_app_gets_the_signal_mask_and_ignored_signals_drainit_was_started_with() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("mask");
        let expect = dir.str("expect");
        let out = Drainit::new(mode)
            .through(&["python3", "-c", LAUNCHER, &expect])
            .args(&["--", "cat", "/proc/self/status"])
            .run(secs(20.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        let status = String::from_utf8(out.stdout).unwrap();
        let got: String = status
            .lines()
            .filter(|l| l.starts_with("SigBlk") || l.starts_with("SigIgn"))
            .map(|l| format!("{l}\n"))
            .collect();
        let want = std::fs::read_to_string(&expect).unwrap();
        assert_eq!(got, want, "{mode:?}");
        // The inputs were not trivial: something blocked, PIPE (bit 13) ignored.
        assert!(want.contains("SigBlk:\t0000008000000a00"), "{want}");
        assert!(
            want.lines()
                .any(|l| l.starts_with("SigIgn") && l.ends_with("1005")),
            "{want}"
        );
    }
}

#[test]
fn no_descriptor_of_drainit_leaks_into_the_app() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("fds");
        let mut r = Drainit::new(mode)
            .app(&["--ready", &dir.str("ready")])
            .spawn();
        let app = r.ready(&dir.path("ready"));
        // The app holds exactly what drainit was given (the test runner may
        // pass some on), without drainit's own signalfd.
        let drainit_fds = open_fds(r.pid());
        let signalfds: Vec<_> = drainit_fds
            .iter()
            .filter(|(_, target)| target.contains("signalfd"))
            .cloned()
            .collect();
        assert_eq!(
            signalfds.len(),
            1,
            "{mode:?}: drainit holds one signalfd: {drainit_fds:?}"
        );
        let want: Vec<_> = drainit_fds
            .into_iter()
            .filter(|fd| !signalfds.contains(fd))
            .collect();
        assert_eq!(open_fds(app), want, "{mode:?}");
        r.signal(SIGTERM);
        r.wait(secs(10.0));
    }
}

#[test]
fn arguments_pass_byte_for_byte_even_when_not_utf8() {
    use std::ffi::OsStr;
    let args: [&[u8]; 6] = [
        b"\xff\xfe invalid",
        b"caf\xc3\xa9",
        b"-v",
        b"--",
        b"",
        b"a\nb",
    ];
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let mut d = Drainit::new(mode).args(&["printf", "%s\\0"]);
        for a in args {
            d = d.arg(OsStr::from_bytes(a));
        }
        let out = d.run(secs(20.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        let want: Vec<u8> = args
            .iter()
            .flat_map(|a| a.iter().copied().chain([0]))
            .collect();
        assert_eq!(out.stdout, want, "{mode:?}");
    }
}

#[test]
fn stdin_and_stdout_pass_through_untouched() {
    let input: Vec<u8> = (0..=255u8).cycle().take(256 * 1024).collect();
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let out = Drainit::new(mode).arg("cat").stdin(&input).run(secs(20.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        assert!(
            out.stdout == input,
            "{mode:?}: stdout differs from stdin ({} bytes)",
            out.stdout.len()
        );
    }
}
