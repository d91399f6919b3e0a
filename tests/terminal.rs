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

/// An app that stops on SIGTSTP (its default), notes each SIGCONT (and
/// whether its group then holds the terminal), and exits 0 on SIGINT.
const STOPPABLE: &str = r#"
import os, signal, sys
ready, log = sys.argv[1], sys.argv[2]
def note(line):
    with open(log, "a") as f:
        f.write(line + "\n")
def cont(*_):
    try:
        where = " fg" if os.tcgetpgrp(0) == os.getpgrp() else " bg"
    except OSError:
        where = ""
    note("SIGCONT" + where)
signal.signal(signal.SIGCONT, cont)
signal.signal(signal.SIGINT, lambda *_: os._exit(0))
with open(ready + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(ready + ".tmp", ready)
while True:
    signal.pause()
"#;

/// A command on a new pseudo-terminal (util-linux `script`), keys typed on
/// demand; whatever it started is SIGKILLed if the test fails half-way.
struct Pty {
    script: std::process::Child,
    stdin: Option<std::process::ChildStdin>,
}

impl Pty {
    fn start(command: &str) -> Pty {
        let mut script = Command::new("script");
        // Only what the test sets reaches drainit.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("DRAINIT_") {
                script.env_remove(key);
            }
        }
        let mut script = script
            .args(["--quiet", "--return", "--command", command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("util-linux script");
        let stdin = script.stdin.take();
        Pty { script, stdin }
    }

    fn type_keys(&mut self, keys: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(keys).unwrap();
        stdin.flush().unwrap();
    }

    fn wait(&mut self, timeout: std::time::Duration) -> Option<Option<i32>> {
        wait_until(timeout, || self.script.try_wait().unwrap()).map(|s| s.code())
    }
}

impl Drop for Pty {
    fn drop(&mut self) {
        if matches!(self.script.try_wait(), Ok(None)) {
            let root = self.script.id() as i32;
            for pid in descendants(root).into_iter().chain([root]) {
                kill(pid, SIGKILL);
            }
            let _ = self.script.wait();
        }
    }
}

fn ready_pid(path: &std::path::Path) -> i32 {
    assert!(wait_for_file(path, secs(15.0)), "the app never got ready");
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn ctrl_z_with_no_job_control_above_drainit_continues_the_app() {
    // As PID 1 (`docker run -it`) nothing could ever continue a stopped app;
    // nor as a plain child of a shell without job control (`sh -c` here).
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("ctrl-z");
        std::fs::write(dir.path("app.py"), STOPPABLE).unwrap();
        let prefix = if mode == Mode::Pid1 {
            "unshare --pid --fork --mount-proc "
        } else {
            ""
        };
        let command = format!(
            "{prefix}{} -- python3 {} {} {} 2>{}",
            bin().display(),
            dir.str("app.py"),
            dir.str("ready"),
            dir.str("log"),
            dir.str("err")
        );
        let mut pty = Pty::start(&command);
        ready_pid(&dir.path("ready"));
        pty.type_keys(b"\x1a");
        // Continued at once, still in the terminal's foreground.
        if wait_until(secs(10.0), || {
            lines(&dir.path("log"))
                .contains(&"SIGCONT fg".to_string())
                .then_some(())
        })
        .is_none()
        {
            panic!(
                "{mode:?}: the app stopped by Ctrl-Z was never continued; log {:?}, stderr {:?}",
                lines(&dir.path("log")),
                std::fs::read_to_string(dir.path("err")).unwrap_or_default()
            );
        }
        pty.type_keys(b"\x03");
        assert_eq!(pty.wait(secs(15.0)), Some(Some(0)), "{mode:?}");
        let err = std::fs::read_to_string(dir.path("err")).unwrap();
        assert!(
            err.contains(
                "warning: the app was stopped by SIGTSTP (Ctrl-Z?) and nothing above drainit does job control: continuing it"
            ),
            "{mode:?}: {err}"
        );
    }
}

#[test]
fn ctrl_z_under_a_job_control_shell_stops_drainit_and_fg_continues_both() {
    if !can_run(Mode::Parent) {
        return;
    }
    let dir = Scratch::new("job");
    std::fs::write(dir.path("app.py"), STOPPABLE).unwrap();
    let mut pty = Pty::start("exec bash --norc --noprofile -i");
    pty.type_keys(
        format!(
            "{} -- python3 {} {} {} 2>{}\n",
            bin().display(),
            dir.str("app.py"),
            dir.str("ready"),
            dir.str("log"),
            dir.str("err")
        )
        .as_bytes(),
    );
    let app = ready_pid(&dir.path("ready"));
    let drainit: i32 = stat(app).unwrap()[1].parse().unwrap();
    assert_eq!(comm(drainit), Some(bin_comm()));
    pty.type_keys(b"\x1a");
    // Both stop, so the shell sees its job stop and takes the terminal back.
    if wait_until(secs(10.0), || {
        (state(app) == Some('T') && state(drainit) == Some('T')).then_some(())
    })
    .is_none()
    {
        panic!(
            "the job did not stop: app {:?}, drainit {:?}; stderr {:?}",
            state(app),
            state(drainit),
            std::fs::read_to_string(dir.path("err")).unwrap_or_default()
        );
    }
    pty.type_keys(format!("jobs -l > {}; fg\n", dir.str("jobs")).as_bytes());
    // `fg` continues drainit, which hands the terminal back to the app's group
    // before passing the SIGCONT on.
    wait_for_line(&dir.path("log"), "SIGCONT fg", secs(10.0));
    assert_eq!(lines(&dir.path("log")), ["SIGCONT fg"]);
    let jobs = std::fs::read_to_string(dir.path("jobs")).unwrap();
    assert!(jobs.contains("Stopped"), "{jobs}");
    assert_ne!(state(drainit), Some('T'));
    pty.type_keys(b"\x03");
    assert!(
        wait_until(secs(10.0), || (!running(drainit)).then_some(())).is_some(),
        "drainit did not exit after the app"
    );
    pty.type_keys(format!("echo $? > {}; exit\n", dir.str("code")).as_bytes());
    assert_eq!(pty.wait(secs(15.0)), Some(Some(0)));
    assert_eq!(lines(&dir.path("code")), ["0"]);
}

#[test]
fn a_stop_that_came_through_drainit_or_a_sigstop_is_left_alone() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("asked-stop");
        std::fs::write(dir.path("app.py"), STOPPABLE).unwrap();
        let (ready, log) = (dir.path("ready"), dir.path("log"));
        let mut r = Drainit::new(mode)
            .args(&[
                "--",
                "python3",
                &dir.str("app.py"),
                &dir.str("ready"),
                &dir.str("log"),
            ])
            .spawn();
        let app = r.ready(&ready);
        let stopped = |what: &str| {
            assert!(
                wait_until(secs(10.0), || (state(app) == Some('T')).then_some(())).is_some(),
                "{mode:?}: {what} did not stop the app"
            );
            // Nothing continues it: it is still stopped a while later.
            std::thread::sleep(secs(1.0));
            assert_eq!(state(app), Some('T'), "{mode:?}: after {what}");
            assert!(lines(&log).is_empty(), "{mode:?}: {:?}", lines(&log));
        };
        // `docker kill -s TSTP`: through drainit, asked for.
        r.signal(20);
        stopped("SIGTSTP through drainit");
        r.signal(SIGCONT);
        wait_for_line(&log, "SIGCONT", secs(10.0));
        std::fs::remove_file(&log).unwrap();
        // SIGSTOP straight to the app.
        kill(app, SIGSTOP);
        stopped("SIGSTOP");
        r.signal(SIGCONT);
        wait_for_line(&log, "SIGCONT", secs(10.0));
        std::fs::remove_file(&log).unwrap();
        // SIGTSTP straight to the app, as from a terminal: nothing above drainit
        // does job control, so drainit continues it.
        kill(app, 20);
        wait_for_line(&log, "SIGCONT", secs(10.0));
        r.wait_for_log("stopped by SIGTSTP", 1, secs(10.0));
        r.signal(SIGTERM);
        let out = r.wait(secs(10.0));
        assert_eq!(out.code, Some(143), "{mode:?}: {}", out.stderr);
    }
}
