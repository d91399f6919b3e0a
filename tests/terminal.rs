//! With a terminal on stdin (`docker run -it`), the app's group gets the
//! foreground: Ctrl-C reaches the app once, from the terminal, and drainit
//! is not in the way.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::io::Write;
use std::process::{Command, Stdio};

/// Runs `command` on a new pseudo-terminal (util-linux `script`), typing `keys`
/// once `ready` exists. Returns script's exit code.
fn on_a_terminal(command: &str, ready: &std::path::Path, keys: &[u8]) -> Option<i32> {
    let mut script = Command::new("script")
        .args(["--quiet", "--return", "--command", command, "/dev/null"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("util-linux script");
    let mut stdin = script.stdin.take().unwrap();
    assert!(wait_for_file(ready, secs(15.0)), "the app never got ready");
    stdin.write_all(keys).unwrap();
    stdin.flush().unwrap();
    let status = wait_until(secs(15.0), || script.try_wait().unwrap());
    if status.is_none() {
        let _ = script.kill();
        panic!("the app did not exit on {keys:?}");
    }
    drop(stdin);
    status.unwrap().code()
}

#[test]
fn ctrl_c_on_the_terminal_reaches_the_app_once() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("tty");
        let prefix = if mode == Mode::Pid1 {
            "unshare --pid --fork --mount-proc "
        } else {
            ""
        };
        let command = format!(
            "{prefix}{} -- python3 {} --ready {} --log {} --stop-signal INT",
            bin().display(),
            app(),
            dir.str("ready"),
            dir.str("log")
        );
        let code = on_a_terminal(&command, &dir.path("ready"), b"\x03");
        assert_eq!(code, Some(0), "{mode:?}");
        // From the terminal to the app's foreground group, not through drainit
        // (which would make it twice).
        assert_eq!(lines(&dir.path("log")), ["SIGINT"], "{mode:?}");

        // The app's own group holds the terminal's foreground.
        let check =
            "import os, sys; sys.exit(0 if os.tcgetpgrp(0) == os.getpgrp() == os.getpid() else 9)";
        let command = format!(
            "{prefix}{} -- python3 -c '{check}' && touch {}",
            bin().display(),
            dir.str("done")
        );
        Command::new("script")
            .args(["--quiet", "--return", "--command", &command, "/dev/null"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            dir.path("done").exists(),
            "{mode:?}: the app is not in the foreground"
        );
    }
}
