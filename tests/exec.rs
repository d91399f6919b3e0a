//! The command is found and run as POSIX `execvp` does: a `PATH` search, and
//! a script without `#!` runs with `/bin/sh`, with every guarantee of the
//! normal path (its own process group, the signal state drainit was started
//! with, none of drainit's descriptors). When it cannot be run, the one line
//! names what is missing: the command, or the interpreter a file needs.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn write_executable(path: &Path, content: &[u8]) {
    std::fs::write(path, content).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Starts drainit with USR1 and real-time 40 blocked and HUP ignored (Python
/// also ignores PIPE and XFSZ), writing its own SigBlk/SigIgn to `expect`.
const LAUNCHER: &str = r#"
import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1, 40})
signal.signal(signal.SIGHUP, signal.SIG_IGN)
with open(sys.argv[1], "w") as f:
    f.write("".join(l for l in open("/proc/self/status") if l.startswith(("SigBlk", "SigIgn"))))
os.execv(sys.argv[2], sys.argv[2:])
"#;

fn sig_lines(pid: i32) -> String {
    ["SigBlk", "SigIgn"]
        .iter()
        .map(|k| format!("{k}:\t{}\n", status_field(pid, k).unwrap()))
        .collect()
}

#[test]
fn a_script_without_shebang_runs_with_bin_sh_like_any_app() {
    // Root, for the mount namespace below.
    if !can_run(Mode::Pid1) {
        return;
    }
    for mode in BOTH {
        let dir = Scratch::new("noshebang");
        let script = dir.path("s.sh");
        let ready = dir.path("ready");
        write_executable(
            &script,
            format!(
                "echo \"args:$0:$*\"\necho $$ > {r}.tmp && mv {r}.tmp {r}\nexec sleep 1000\n",
                r = ready.display()
            )
            .as_bytes(),
        );
        let expect = dir.str("expect");
        // dash, Debian's /bin/sh, clears the signal mask as it starts; bash keeps
        // it. So /bin/sh is bash here (in a mount namespace of the test's own),
        // and the app (`sleep`, exec'd by the script) shows what drainit handed on.
        let mut r = Drainit::new(mode)
            .through(&[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                "mount --bind /usr/bin/bash /usr/bin/sh && exec \"$@\"",
                "sh",
                "python3",
                "-c",
                LAUNCHER,
                &expect,
            ])
            .args(&["--", script.to_str().unwrap(), "one", "two words"])
            .spawn();
        let app = r.ready(&ready);
        let drainit = r.pid();
        // The script wrote `ready` just before it exec'd `sleep`: wait until
        // `sleep` sleeps (its start-up opens locale files of its own).
        let asleep = || {
            let wchan = std::fs::read_to_string(format!("/proc/{app}/wchan")).ok()?;
            (comm(app).as_deref() == Some("sleep") && wchan.contains("nanosleep")).then_some(())
        };
        assert!(
            wait_until(secs(10.0), asleep).is_some(),
            "{mode:?}: the script never exec'd sleep"
        );
        // Its own process group, as for any app.
        assert_eq!(pgrp(app), Some(app), "{mode:?}: the app leads its group");
        assert_ne!(pgrp(drainit), Some(app), "{mode:?}");
        // The signal state drainit was started with (read from outside, after
        // the script exec'd `sleep`: the shell's own mask juggling is over).
        let want = std::fs::read_to_string(&expect).unwrap();
        assert!(want.contains("SigBlk:\t0000008000000200"), "{want}");
        assert_eq!(sig_lines(app), want, "{mode:?}");
        // None of drainit's descriptors: what drainit holds but its signalfd.
        let want: Vec<_> = open_fds(drainit)
            .into_iter()
            .filter(|(_, target)| !target.contains("signalfd"))
            .collect();
        assert_eq!(open_fds(app), want, "{mode:?}");
        r.signal(SIGTERM);
        let out = r.wait(secs(10.0));
        assert_eq!(out.code, Some(143), "{mode:?}: {}", out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(
            stdout,
            format!("args:{}:one two words\n", script.display()),
            "{mode:?}: /bin/sh ran the script with its arguments"
        );
    }
}

#[test]
fn a_script_without_shebang_is_found_on_path_and_exits_with_its_code() {
    let dir = Scratch::new("noshebang-path");
    write_executable(&dir.path("hello-script"), b"echo hi\nexit 7\n");
    let path = format!("{}:{}", dir.str(""), std::env::var("PATH").unwrap());
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let out = Drainit::new(mode)
            .env("PATH", &path)
            .arg("hello-script")
            .run(secs(20.0));
        assert_eq!(out.code, Some(7), "{mode:?}: {}", out.stderr);
        assert_eq!(out.stdout, b"hi\n", "{mode:?}");
    }
}

#[test]
fn a_missing_interpreter_is_named_not_the_script() {
    let dir = Scratch::new("nointerp");
    write_executable(&dir.path("b.sh"), b"#!/nonexistent/interp -x\necho no\n");
    write_executable(&dir.path("esc.sh"), b"#!/nonexistent/in\x1bterp\n");
    let path = format!("{}:{}", dir.str(""), std::env::var("PATH").unwrap());
    let b = dir.str("b.sh");
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for (args, names) in [
            (vec![b.as_str()], b.as_str()),
            (vec!["b.sh"], "b.sh"), // found on PATH
        ] {
            let out = Drainit::new(mode)
                .env("PATH", &path)
                .args(&args)
                .run(secs(20.0));
            assert_eq!(out.stderr_lines().len(), 1, "one line: {}", out.stderr);
            out.assert_error(127, &format!(
                "drainit: error: interpreter not found: /nonexistent/interp (named on the #! line of {names})"
            ), &format!("{mode:?} {args:?}"));
        }
        // Escaped: a terminal escape in the #! line cannot drive the terminal.
        let out = Drainit::new(mode).arg(dir.str("esc.sh")).run(secs(20.0));
        assert_eq!(out.code, Some(127), "{mode:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("/nonexistent/in\\u{1b}terp") && !out.stderr.contains('\x1b'),
            "{mode:?}: {}",
            out.stderr
        );
    }
}

/// The path of `/bin/true`'s dynamic loader, as it appears in the file.
fn loader_in(binary: &[u8]) -> &[u8] {
    let at = binary
        .windows(5)
        .position(|w| w == b"/lib6" || w == b"/lib/")
        .expect("/bin/true names a loader under /lib");
    let len = binary[at..].iter().position(|b| *b == 0).unwrap();
    &binary[at..at + len]
}

#[test]
fn a_missing_dynamic_loader_is_named() {
    let dir = Scratch::new("noloader");
    let mut binary = std::fs::read("/bin/true").unwrap();
    let loader = loader_in(&binary).to_vec();
    assert!(
        loader.starts_with(b"/lib") && loader.len() > 6,
        "{loader:?}"
    );
    // Same length, another name: the kernel cannot find the loader.
    let at = binary
        .windows(loader.len())
        .position(|w| w == loader)
        .unwrap();
    let last = at + loader.len() - 1;
    binary[last] = b'X';
    let mut missing = loader.clone();
    *missing.last_mut().unwrap() = b'X';
    let missing = String::from_utf8(missing).unwrap();
    let app = dir.path("app");
    write_executable(&app, &binary);
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let out = Drainit::new(mode).arg(&app).run(secs(20.0));
        out.assert_error(127, &format!(
            "drainit: error: interpreter not found: {missing} (the dynamic loader that {} needs)",
            app.display()
        ), &format!("{mode:?}"));
    }
}

#[test]
fn a_command_that_is_missing_still_says_command_not_found() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for cmd in ["no-such-command-xyz", "/no/such/path"] {
            let out = Drainit::new(mode).arg(cmd).run(secs(20.0));
            out.assert_error(
                127,
                &format!("drainit: error: command not found: {cmd}: no such file or directory"),
                &format!("{mode:?}"),
            );
        }
    }
}

#[test]
fn a_binary_for_another_machine_is_not_handed_to_the_shell() {
    let dir = Scratch::new("foreign-elf");
    // An ELF header the kernel rejects (ENOEXEC), as for another architecture.
    let app = dir.path("foreign");
    write_executable(
        &app,
        b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0\x02\0\xb7\0garbage",
    );
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let out = Drainit::new(mode).arg(&app).run(secs(20.0));
        out.assert_error(
            126,
            &format!(
                "drainit: error: command cannot be executed: {}: exec format error",
                app.display()
            ),
            &format!("{mode:?}"),
        );
        assert!(out.stdout.is_empty(), "{mode:?}: nothing ran it");
    }
}

#[test]
fn without_bin_sh_a_script_without_shebang_says_bin_sh_is_missing() {
    // A mount namespace where /usr/bin (and so /bin/sh) is an empty tmpfs.
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("nosh");
    let script = dir.path("s.sh");
    write_executable(&script, b"echo hi\n");
    let hide = "mount -t tmpfs none /usr/bin && exec \"$0\" \"$@\"";
    for mode in BOTH {
        let out = Drainit::new(mode)
            .through(&[
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "sh",
                "-c",
                hide,
            ])
            .arg(&script)
            .run(secs(20.0));
        out.assert_error(127, &format!(
            "drainit: error: interpreter not found: /bin/sh (needed to run {}, which has no #! line)",
            script.display()
        ), &format!("{mode:?}"));
    }
}

#[test]
fn path_search_skips_what_it_may_not_run_and_says_so_if_nothing_else() {
    let dir = Scratch::new("eacces");
    std::fs::create_dir(dir.path("first")).unwrap();
    std::fs::create_dir(dir.path("second")).unwrap();
    // Not executable in the first directory, executable in the second.
    std::fs::write(dir.path("first/tool"), "#!/bin/sh\nexit 1\n").unwrap();
    write_executable(&dir.path("second/tool"), b"#!/bin/sh\nexit 5\n");
    std::fs::write(dir.path("first/only-here"), "#!/bin/sh\nexit 1\n").unwrap();
    // The system's PATH last: `unshare` must still be found.
    let path = format!(
        "{}:{}:{}",
        dir.str("first"),
        dir.str("second"),
        std::env::var("PATH").unwrap()
    );
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let out = Drainit::new(mode)
            .env("PATH", &path)
            .arg("tool")
            .run(secs(20.0));
        assert_eq!(out.code, Some(5), "{mode:?}: {}", out.stderr);
        let out = Drainit::new(mode)
            .env("PATH", &path)
            .arg("only-here")
            .run(secs(20.0));
        out.assert_error(
            126,
            "drainit: error: command cannot be executed: only-here: permission denied",
            &format!("{mode:?}"),
        );
    }
}
