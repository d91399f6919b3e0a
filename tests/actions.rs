//! Drain actions: `--on-drain CMD` runs when a drain starts, `--stop-command
//! CMD` runs instead of the stop signal, `--on-drain-post URL` POSTs when a
//! drain starts. Each runs beside the drain, never in its way: in a process
//! group of its own, its output on drainit's stderr (prefixed, rate-capped),
//! bounded by the kill deadline and by the app's life; a failing, hanging,
//! forking or flooding action is logged and never fatal.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

#[test]
fn bad_actions_are_refused_at_start_naming_the_option_and_the_variable() {
    let cases: &[(&str, &str, &[&str], &str)] = &[
        ("--on-drain", "", &[], "--on-drain: the command is empty"),
        (
            "--on-drain",
            " \t ",
            &[],
            "--on-drain: the command is empty",
        ),
        (
            "--on-drain",
            "sh -c 'echo hi",
            &[],
            "--on-drain: unbalanced ' (the command is split into words as a shell would, without expansion: quotes must pair up)",
        ),
        (
            "--stop-command",
            "nginx -s \"quit",
            &["--kill-after", "5s"],
            "--stop-command: unbalanced \" (the command is split into words as a shell would, without expansion: quotes must pair up)",
        ),
        (
            "--stop-command",
            "true",
            &[],
            "--stop-command: needs a kill deadline (--kill-after or --stop-timeout): a stop command that hangs must not leave the app running",
        ),
        (
            "--on-drain",
            "/no/such/deregister --now",
            &[],
            "--on-drain: /no/such/deregister: no such file",
        ),
        (
            "--stop-command",
            "{dir}/not-executable",
            &["--stop-timeout", "10s"],
            "--stop-command: {dir}/not-executable: not executable",
        ),
        ("--on-drain", "{dir}", &[], "--on-drain: {dir}: not a file"),
        (
            "--on-drain-post",
            "https://consul:8500/",
            &[],
            "--on-drain-post: 'https://consul:8500/': only http:// URLs are supported (expected http://HOST[:PORT][/PATH])",
        ),
    ];
    let dir = Scratch::new("bad-actions");
    std::fs::write(dir.path("not-executable"), "#!/bin/sh\n").unwrap();
    let dir = dir.str("");
    let dir = dir.trim_end_matches('/');
    for (option, value, rest, want) in cases {
        let (value, want) = (value.replace("{dir}", dir), want.replace("{dir}", dir));
        for by_env in [false, true] {
            // An empty variable counts as unset: only the flag can be empty.
            if by_env && value.trim().is_empty() {
                continue;
            }
            let d = Drainit::new(Mode::Parent)
                .options(&[(option, &value)], by_env)
                .args(rest)
                .args(&["sh", "-c", "sleep 5"]);
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
            assert_eq!(line, expected, "by_env={by_env}");
        }
    }
    // A program not on PATH is named with the PATH searched.
    let line = refusal(
        Drainit::new(Mode::Parent)
            .env("PATH", "/usr/bin:/bin")
            .args(&["--on-drain", "consul-deregister web", "true"]),
        "not on PATH",
    );
    assert_eq!(
        line,
        "drainit: error: --on-drain: command 'consul-deregister' not found in PATH (/usr/bin:/bin)"
    );
}

/// drainit (`mode`) with `options` ({dir} stands for the scratch directory)
/// and the fixture app (`app_args`), started and ready.
struct Run {
    run: Running,
    dir: Scratch,
    /// The app's host pid.
    app: i32,
    mode: Mode,
}

fn start(mode: Mode, options: &[&str], app_args: &[&str]) -> Option<Run> {
    if !can_run(mode) {
        return None;
    }
    let dir = Scratch::new("actions");
    let path = dir.str("");
    let path = path.trim_end_matches('/');
    let options: Vec<String> = options.iter().map(|o| o.replace("{dir}", path)).collect();
    let mut args = vec![
        "--ready".to_string(),
        dir.str("ready"),
        "--log".to_string(),
        dir.str("log"),
    ];
    args.extend(app_args.iter().map(|a| a.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut run = Drainit::new(mode).args(&options).app(&args).spawn();
    let app = run.ready(&dir.path("ready"));
    Some(Run {
        run,
        dir,
        app,
        mode,
    })
}

impl Run {
    /// Time from `since` until the fixture has logged `line`.
    fn time_to_line(&self, line: &str, since: std::time::Duration) -> std::time::Duration {
        wait_for_line(&self.dir.path("log"), line, secs(15.0));
        self.run.elapsed() - since
    }

    /// The host pid of drainit's descendant whose pid in drainit's namespace is `inner`.
    fn host_pid(&mut self, inner: i32) -> i32 {
        if self.mode == Mode::Parent {
            return inner;
        }
        let drainit = self.run.pid();
        wait_until(secs(5.0), || {
            let under = descendants(drainit);
            processes()
                .into_iter()
                .find(|p| p.inner == inner && under.contains(&p.pid))
                .map(|p| p.pid)
        })
        .unwrap_or_else(|| panic!("no process with inner pid {inner} under drainit"))
    }

    /// The host pid of drainit's live descendant whose pid in drainit's
    /// namespace is `inner`, if there is one.
    fn alive(&mut self, inner: i32) -> Option<i32> {
        if self.mode == Mode::Parent {
            return running(inner).then_some(inner);
        }
        let under = descendants(self.run.pid());
        processes()
            .into_iter()
            .find(|p| p.inner == inner && under.contains(&p.pid) && running(p.pid))
            .map(|p| p.pid)
    }

    /// The number a shell action wrote to `name` (once it is there).
    fn number(&self, name: &str) -> i32 {
        let path = self.dir.path(name);
        assert!(
            wait_for_file(&path, secs(10.0)),
            "{name} never appeared; stderr:\n{}",
            self.run.stderr()
        );
        std::fs::read_to_string(&path)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    }
}

/// `sh -c 'SCRIPT'`, for an action: the script in single quotes.
fn shell(script: &str) -> String {
    assert!(!script.contains('\''), "{script}");
    format!("sh -c '{script}'")
}

#[test]
fn on_drain_runs_at_the_drain_start_with_its_variables_and_its_output_prefixed() {
    for mode in BOTH {
        let on_drain = shell(
            "echo \"reason=$DRAINIT_REASON deadline=$DRAINIT_DEADLINE_MS app=$DRAINIT_APP_PID\" > {dir}/env.tmp; \
             echo \"$$ $(cut -d\" \" -f5 /proc/$$/stat)\" >> {dir}/env.tmp; mv {dir}/env.tmp {dir}/env; \
             echo to stdout; echo to stderr >&2; head -c 3000 /dev/zero | tr \"\\0\" x; echo; \
             printf \"no newline \\033[31m\"",
        );
        let Some(mut r) = start(
            mode,
            &[
                "--drain-delay",
                "3s",
                "--kill-after",
                "6s",
                "--on-drain",
                &on_drain,
            ],
            &[],
        ) else {
            continue;
        };
        let app_inner: i32 = std::fs::read_to_string(r.dir.path("ready"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let sent = r.run.signal(SIGTERM);
        assert!(
            wait_for_file(&r.dir.path("env"), secs(10.0)),
            "{mode:?}: on-drain never ran"
        );
        let took = r.run.elapsed() - sent;
        assert!(
            took < secs(2.0),
            "{mode:?}: on-drain ran {took:?} after SIGTERM"
        );
        // Beside the delay: the app has had no signal yet.
        assert!(
            lines(&r.dir.path("log")).is_empty(),
            "{mode:?}: the app was signalled first"
        );
        let env = lines(&r.dir.path("env"));
        let fields: Vec<&str> = env[0].split([' ', '=']).collect();
        assert_eq!(fields[0..2], ["reason", "SIGTERM"], "{mode:?}: {env:?}");
        let deadline: u64 = fields[3].parse().unwrap();
        // SIGKILL to the actions 0.5s before the kill deadline (6s).
        assert!(
            (4_500..=5_500).contains(&deadline),
            "{mode:?}: DRAINIT_DEADLINE_MS={deadline}"
        );
        assert_eq!(
            fields[5].parse::<i32>().unwrap(),
            app_inner,
            "{mode:?}: DRAINIT_APP_PID"
        );
        // A process group of its own.
        let ids: Vec<i32> = env[1].split(' ').map(|n| n.parse().unwrap()).collect();
        assert_eq!(
            ids[0], ids[1],
            "{mode:?}: the action leads its own group: {env:?}"
        );
        assert_ne!(ids[1], app_inner, "{mode:?}");
        let took = r.time_to_line("SIGTERM", sent);
        assert!(
            took >= secs(3.0),
            "{mode:?}: the stop signal came after {took:?}"
        );
        let out = r.run.wait(secs(15.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        for line in [
            "drainit: on-drain: to stdout",
            "drainit: on-drain: to stderr",
            "drainit: on-drain: no newline \\u{1b}[31m",
        ] {
            assert!(
                out.stderr_lines().contains(&line),
                "{mode:?}: no {line:?} in:\n{}",
                out.stderr
            );
        }
        assert!(
            out.stderr.contains("on-drain: done after"),
            "{mode:?}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.contains('\x1b'),
            "{mode:?}: raw escape on stderr"
        );
        // A long line is cut at 1 KiB.
        let long = format!("drainit: on-drain: {}...", "x".repeat(1024));
        assert!(
            out.stderr_lines().contains(&long.as_str()),
            "{mode:?}: no cut line"
        );
    }
}

#[test]
fn a_stop_command_replaces_the_stop_signal() {
    for mode in BOTH {
        for by_env in [false, true] {
            // The app stops on SIGUSR2 (as well as SIGTERM): the stop command sends it.
            let stop = shell("echo stopping; kill -USR2 $DRAINIT_APP_PID");
            let d_options = [
                ("--drain-delay", "1s"),
                ("--kill-after", "8s"),
                ("--stop-command", stop.as_str()),
            ];
            if !can_run(mode) {
                continue;
            }
            let dir = Scratch::new("stop-command");
            let mut run = Drainit::new(mode)
                .options(&d_options, by_env)
                .app(&[
                    "--ready",
                    &dir.str("ready"),
                    "--log",
                    &dir.str("log"),
                    "--stop-signal",
                    "USR2",
                ])
                .spawn();
            run.ready(&dir.path("ready"));
            let sent = run.signal(SIGTERM);
            wait_for_line(&dir.path("log"), "SIGUSR2", secs(15.0));
            let took = run.elapsed() - sent;
            assert!(
                took >= secs(1.0),
                "{mode:?} by_env={by_env}: stopped after {took:?}, before the delay"
            );
            assert!(
                took < secs(5.0),
                "{mode:?} by_env={by_env}: stopped after {took:?}"
            );
            let out = run.wait(secs(15.0));
            assert_eq!(
                out.code,
                Some(0),
                "{mode:?} by_env={by_env}: {}",
                out.stderr
            );
            // The app never had a SIGTERM from drainit: only the stop command's SIGUSR2.
            assert_eq!(
                log_lines(&dir.path("log")),
                ["SIGUSR2"],
                "{mode:?} by_env={by_env}"
            );
            assert!(
                out.stderr.contains("instead of sending SIGTERM")
                    && out
                        .stderr_lines()
                        .contains(&"drainit: stop command: stopping"),
                "{mode:?} by_env={by_env}: {}",
                out.stderr
            );
            assert!(!out.stderr.contains("sending SIGTERM to"), "{}", out.stderr);
        }
    }
}

#[test]
fn a_failing_stop_command_is_replaced_by_the_stop_signal() {
    let Some(mut r) = start(
        Mode::Pid1,
        &[
            "--drain-delay",
            "0.5s",
            "--stop-timeout",
            "10s",
            "--stop-signal",
            "QUIT",
            "--stop-command",
            &shell("echo pid file not found; exit 3"),
        ],
        &["--stop-signal", "QUIT"],
    ) else {
        return;
    };
    let sent = r.run.signal(SIGTERM);
    let took = r.time_to_line("SIGQUIT", sent);
    assert!(
        took >= secs(0.5) && took < secs(4.0),
        "SIGQUIT after {took:?}"
    );
    let out = r.run.wait(secs(15.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(log_lines(&r.dir.path("log")), ["SIGQUIT"]);
    assert!(
        out.stderr_lines()
            .contains(&"drainit: stop command: pid file not found")
            && out
                .stderr
                .contains("stop command: exited with code 3 after")
            && out.stderr.contains("; sending SIGQUIT instead"),
        "{}",
        out.stderr
    );
}

#[test]
fn a_failing_on_drain_is_logged_and_the_drain_goes_on() {
    if !can_run(Mode::Pid1) {
        return;
    }
    // One that fails, and one whose program is gone by the time of the drain.
    for gone in [false, true] {
        let dir = Scratch::new("failing");
        let script = dir.path("deregister");
        std::fs::write(&script, "#!/bin/sh\necho deregistering; exit 7\n").unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        let mut run = Drainit::new(Mode::Pid1)
            .args(&["--drain-delay", "1s", "--kill-after", "5s", "--on-drain"])
            .arg(&script)
            .app(&["--ready", &dir.str("ready"), "--log", &dir.str("log")])
            .spawn();
        run.ready(&dir.path("ready"));
        if gone {
            std::fs::remove_file(&script).unwrap();
        }
        let sent = run.signal(SIGTERM);
        wait_for_line(&dir.path("log"), "SIGTERM", secs(15.0));
        let took = run.elapsed() - sent;
        assert!(took >= secs(1.0), "gone={gone}: SIGTERM after {took:?}");
        let out = run.wait(secs(15.0));
        // The app's code, never the action's.
        assert_eq!(out.code, Some(0), "gone={gone}: {}", out.stderr);
        let want = if gone {
            format!(
                "on-drain: cannot run {}: command not found; the drain goes on",
                script.display()
            )
        } else {
            "on-drain: exited with code 7 after".to_string()
        };
        assert!(
            out.stderr.contains(&want),
            "gone={gone}: no {want:?} in:\n{}",
            out.stderr
        );
        if !gone {
            assert!(
                out.stderr_lines()
                    .contains(&"drainit: on-drain: deregistering")
                    && out.stderr.contains("; the drain goes on"),
                "{}",
                out.stderr
            );
        }
    }
}

#[test]
fn a_hanging_action_is_killed_with_its_group_before_the_kill_deadline() {
    for mode in BOTH {
        // It forks a grandchild into its group, then waits for it for good.
        let on_drain =
            shell("sleep 300 & echo $! > {dir}/grandchild; echo $$ > {dir}/action; wait");
        let Some(mut r) = start(
            mode,
            &["--kill-after", "3s", "--on-drain", &on_drain],
            &["--on-term", "ignore"],
        ) else {
            continue;
        };
        let sent = r.run.signal(SIGTERM);
        let action = r.number("action");
        let grandchild = r.number("grandchild");
        let (action, grandchild) = (r.host_pid(action), r.host_pid(grandchild));
        let app = r.app;
        let mut gone = [None; 3];
        let until = std::time::Instant::now() + secs(15.0);
        while gone.iter().any(Option::is_none) && std::time::Instant::now() < until {
            for (i, pid) in [action, grandchild, app].into_iter().enumerate() {
                if gone[i].is_none() && !running(pid) {
                    gone[i] = Some(r.run.elapsed() - sent);
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        let [Some(action_gone), Some(grandchild_gone), Some(app_gone)] = gone else {
            panic!(
                "{mode:?}: still running: {gone:?}; stderr:\n{}",
                r.run.stderr()
            );
        };
        for (what, t) in [
            ("the action", action_gone),
            ("its grandchild", grandchild_gone),
        ] {
            assert!(
                t >= secs(2.5),
                "{mode:?}: {what} killed after {t:?}, before kill deadline - 0.5s"
            );
            assert!(
                t <= app_gone,
                "{mode:?}: {what} gone at {t:?}, the app at {app_gone:?}"
            );
        }
        assert!(
            app_gone >= secs(3.0),
            "{mode:?}: the app killed after {app_gone:?}"
        );
        let out = r.run.wait(secs(15.0));
        assert_eq!(out.code, Some(137), "{mode:?}: {}", out.stderr);
        // The action first, then the kill deadline.
        let at = |text: &str| {
            out.stderr
                .find(text)
                .unwrap_or_else(|| panic!("{mode:?}: no {text:?} in:\n{}", out.stderr))
        };
        assert!(
            at("on-drain: still running before the kill deadline: SIGKILL to its process group")
                < at("kill deadline reached: SIGKILL"),
            "{mode:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn what_an_action_leaves_in_its_group_ends_with_it() {
    for mode in BOTH {
        // It exits at once, leaving a grandchild in its group.
        let on_drain = shell(
            "sleep 300 & echo $! > {dir}/grandchild.tmp; mv {dir}/grandchild.tmp {dir}/grandchild",
        );
        let Some(mut r) = start(
            mode,
            &[
                "--drain-delay",
                "4s",
                "--kill-after",
                "10s",
                "--on-drain",
                &on_drain,
            ],
            &[],
        ) else {
            continue;
        };
        let sent = r.run.signal(SIGTERM);
        let grandchild = r.number("grandchild");
        // As PID 1: gone already if no process of drainit's has its pid.
        if let Some(grandchild) = r.alive(grandchild) {
            wait_until(secs(10.0), || (!running(grandchild)).then_some(()))
                .unwrap_or_else(|| panic!("{mode:?}: the grandchild survived its action"));
        }
        let took = r.run.elapsed() - sent;
        assert!(took < secs(3.0), "{mode:?}: the grandchild lived {took:?}");
        // Long before the app's stop signal.
        assert!(
            lines(&r.dir.path("log")).is_empty(),
            "{mode:?}: the app was signalled"
        );
        let out = r.run.wait(secs(15.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        assert!(
            out.stderr
                .contains("on-drain: left processes behind in its process group: SIGKILL to them"),
            "{mode:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_flooding_action_delays_neither_forwarding_nor_the_exit() {
    for mode in BOTH {
        let Some(mut r) = start(
            mode,
            &[
                "--drain-delay",
                "4s",
                "--kill-after",
                "20s",
                "--on-drain",
                "yes flood",
            ],
            &[],
        ) else {
            continue;
        };
        let drainit = r.run.pid();
        let cpu = |pid: i32| -> u64 {
            let f = stat(pid).unwrap();
            f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
        };
        let sent = r.run.signal(SIGTERM);
        r.run
            .wait_for_log("drainit: on-drain: flood", 1, secs(10.0));
        let before = cpu(drainit);
        // Signals still go through at once while the action floods.
        for (i, (signal, name)) in [
            (SIGUSR1, "SIGUSR1"),
            (SIGHUP, "SIGHUP"),
            (SIGUSR2, "SIGUSR2"),
        ]
        .into_iter()
        .enumerate()
        {
            let at = r.run.signal(signal);
            let took = r.time_to_line(name, at);
            assert!(
                took < secs(1.0),
                "{mode:?}: signal {i} forwarded after {took:?}"
            );
        }
        // drainit's CPU over the flood, measured within the delay (it lives on).
        while r.run.elapsed() < sent + secs(3.0) {
            std::thread::sleep(secs(0.01));
        }
        let used = cpu(drainit) - before;
        let took = r.time_to_line("SIGTERM", sent);
        assert!(took >= secs(4.0), "{mode:?}: SIGTERM after {took:?}");
        let out = r.run.wait(secs(15.0));
        // The app exits on SIGTERM: drainit with it, not at the action's SIGKILL (19.5s).
        let exit = out.elapsed - sent;
        assert!(exit < secs(8.0), "{mode:?}: exited {exit:?} after SIGTERM");
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        // A few lines a second are shown; the rest dropped and counted.
        let shown = out
            .stderr_lines()
            .iter()
            .filter(|l| **l == "drainit: on-drain: flood")
            .count();
        assert!((1..=400).contains(&shown), "{mode:?}: {shown} lines shown");
        assert!(
            out.stderr
                .contains("lines of output not shown (at most 50 a second are)"),
            "{mode:?}"
        );
        assert!(
            out.stderr
                .contains("on-drain: the app has exited: SIGKILL to its process group"),
            "{mode:?}"
        );
        // Ticks of 10ms: drainit did not spin on the flood.
        assert!(
            used <= 30,
            "{mode:?}: drainit used {used} ticks of CPU during the flood"
        );
    }
}

#[test]
fn on_drain_post_posts_to_a_local_server_and_a_silent_one_delays_nothing() {
    use std::io::{Read, Write};
    use std::net::TcpListener;
    for mode in BOTH {
        for answers in [true, false] {
            if !can_run(mode) {
                continue;
            }
            let server = TcpListener::bind("127.0.0.1:0").unwrap();
            let port = server.local_addr().unwrap().port();
            let got = std::sync::Arc::new(std::sync::Mutex::new(None));
            let seen = std::sync::Arc::clone(&got);
            std::thread::spawn(move || {
                let (mut c, _) = server.accept().unwrap();
                let at = std::time::Instant::now();
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match c.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                *seen.lock().unwrap() = Some((at, String::from_utf8_lossy(&head).into_owned()));
                if answers {
                    let _ = c.write_all(b"HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
                } else {
                    std::thread::sleep(secs(30.0));
                }
            });
            let url = format!("http://127.0.0.1:{port}/admin/drain");
            let Some(mut r) = start(
                mode,
                &[
                    "--drain-delay",
                    "1s",
                    "--kill-after",
                    "5s",
                    "--on-drain-post",
                    &url,
                ],
                &[],
            ) else {
                continue;
            };
            let before = std::time::Instant::now();
            let sent = r.run.signal(SIGTERM);
            let took = r.time_to_line("SIGTERM", sent);
            assert!(took >= secs(1.0), "{mode:?}: SIGTERM after {took:?}");
            let out = r.run.wait(secs(15.0));
            assert_eq!(
                out.code,
                Some(0),
                "{mode:?} answers={answers}: {}",
                out.stderr
            );
            // A silent server holds nothing up: drainit exits with the app.
            assert!(
                out.elapsed - sent < secs(4.0),
                "{mode:?}: exit after {:?}",
                out.elapsed - sent
            );
            let (at, head) = got
                .lock()
                .unwrap()
                .clone()
                .expect("the server got no request");
            assert!(
                at - before < secs(2.0),
                "{mode:?}: POST {:?} after SIGTERM",
                at - before
            );
            assert!(
                head.starts_with("POST /admin/drain HTTP/1.0\r\n")
                    && head.contains("\r\nContent-Length: 0\r\n"),
                "{mode:?}: {head:?}"
            );
            if answers {
                assert!(
                    out.stderr
                        .contains(&format!("on-drain-post: POST {url} answered 202")),
                    "{mode:?}: {}",
                    out.stderr
                );
            }
        }
    }
}

#[test]
fn explain_shows_the_actions_on_the_timeline() {
    let out = Drainit::new(Mode::Parent)
        .args(&[
            "--explain",
            "--drain-delay",
            "5s",
            "--stop-timeout",
            "30s",
            "--on-drain",
            "consul services deregister -id=web",
            "--on-drain-post",
            "http://127.0.0.1:9901/drain_listeners",
            "--stop-command",
            "nginx -s quit",
            "--",
            "nginx",
        ])
        .run(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "  t+0s   on-drain: consul services deregister -id=web starts",
        "  t+0s   on-drain-post: POST http://127.0.0.1:9901/drain_listeners, for at most 10s",
        "  t+5s   stop command: nginx -s quit instead of the stop signal; if it cannot run or fails, SIGTERM, then SIGCONT",
        "  t+28.5s on-drain, stop command: SIGKILL to the process group of each that still runs",
    ] {
        assert!(text.contains(line), "no {line:?} in:\n{text}");
    }
}
