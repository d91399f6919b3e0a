//! The adaptive drain (`--drain-quiet`): the stop signal goes once no new
//! connection has reached the app's ports for the quiet period and none
//! carries a request, never before `--drain-min`, never after `--drain-delay`;
//! a health checker from `--drain-ignore-from` never keeps it open; without
//! sight of the app's sockets it falls back to the fixed delay. As PID 1 (as
//! root and as uid 65534) and as a plain parent.
//!
//! The app (tests/fixtures/server.py) dies at once on SIGTERM: a request it
//! has in flight when the stop signal comes is lost, so "the request
//! completed" proves the drain waited for it.
//!
//! Lower bounds are taken from drainit's own stamp of the stop ("t+1.7s",
//! counted from its receipt of SIGTERM, which is after the test sent it),
//! against times the test took before what they bound.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

fn server() -> String {
    format!("{}/tests/fixtures/server.py", env!("CARGO_MANIFEST_DIR"))
}

/// Who drainit runs as.
#[derive(Clone, Copy, Debug, PartialEq)]
enum As {
    Root,
    Nobody,
}

struct App {
    run: Running,
    /// The app listens on HOST:port, HOST an address of its own in
    /// 127.0.0.0/8 (see `own_loopback`).
    port: u16,
    host: String,
    _dir: Scratch,
}

/// An address of 127.0.0.0/8 (all of it is this host's) for one test's app:
/// tests running beside this one (this suite's, or another's) that pick a
/// "free" port and probe 127.0.0.1 on it can never reach this app, nor do
/// its connections count for them.
fn own_loopback() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::SeqCst);
    let salt = std::process::id() % 200;
    format!("127.{}.{}.{}", 10 + salt, 1 + n / 200, 1 + n % 200)
}

/// drainit with `options` running the server fixture (through `app_prefix`, e.g. `unshare --net`).
fn start(mode: Mode, who: As, options: &[&str], app_prefix: &[&str], host: &str) -> Option<App> {
    // "own": an address of its own; "own --flag": and the flag for the app.
    let (host, extra) = host.split_once(' ').unwrap_or((host, ""));
    let host = if host == "own" {
        own_loopback()
    } else {
        host.to_string()
    };
    if !can_run(Mode::Pid1) {
        // Root is needed for uid 65534 and for PID 1 alike.
        return None;
    }
    let dir = Scratch::new("adaptive");
    // uid 65534 writes the ready file here.
    std::fs::set_permissions(
        dir.path(""),
        std::os::unix::fs::PermissionsExt::from_mode(0o777),
    )
    .unwrap();
    let mut d = Drainit::new(mode).args(options);
    if who == As::Nobody {
        d = d.through(&[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ]);
    }
    let ready = dir.str("ready");
    let mut run = d
        .arg("--")
        .args(app_prefix)
        .args(&["python3", &server(), "--host", &host, "--ready", &ready])
        .args(&extra.split_whitespace().collect::<Vec<_>>())
        .spawn();
    assert!(
        wait_for_file(&dir.path("ready"), secs(20.0)),
        "the app never got ready; stderr: {}",
        run.stderr()
    );
    let port = std::fs::read_to_string(dir.path("ready"))
        .unwrap()
        .parse()
        .unwrap();
    run.pid();
    Some(App {
        run,
        port,
        host,
        _dir: dir,
    })
}

/// One HTTP/1.0 request to the app (it closes the connection after
/// answering); the whole answer, or the error.
fn get(host: &str, port: u16, path: &str) -> Result<String, String> {
    let mut s = TcpStream::connect((host, port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(secs(60.0))).unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).map_err(|e| e.to_string())?;
    if answer.starts_with("HTTP/1.1 200 ") || answer.starts_with("HTTP/1.0 200 ") {
        Ok(answer)
    } else {
        Err(format!("answer: {answer:?}"))
    }
}

/// A health checker from `from`: an HTTP/1.0 request every `every`, until stopped.
fn checker(from: &str, host: &str, port: u16, every: Duration) -> std::process::Child {
    let script = format!(
        "import socket, time\n\
         while True:\n\
         \x20   try:\n\
         \x20       s = socket.socket(); s.bind(('{from}', 0)); s.connect(('{host}', {port}))\n\
         \x20       s.sendall(b'GET /health HTTP/1.0\\r\\n\\r\\n')\n\
         \x20       while s.recv(4096): pass\n\
         \x20       s.close()\n\
         \x20   except OSError:\n\
         \x20       pass\n\
         \x20   time.sleep({})\n",
        every.as_secs_f64()
    );
    std::process::Command::new("python3")
        .args(["-c", &script])
        .spawn()
        .unwrap()
}

/// drainit's stamp of its stop signal ("t+1.7s: ... sending SIGTERM"), once logged.
fn stop_stamp(run: &Running, timeout: Duration) -> Duration {
    run.wait_for_log("sending SIGTERM", 1, timeout);
    let stderr = run.stderr();
    let line = stderr
        .lines()
        .find(|l| l.contains("sending SIGTERM"))
        .unwrap();
    let stamp = line
        .split("t+")
        .nth(1)
        .and_then(|s| s.split("s:").next())
        .unwrap_or_else(|| panic!("no stamp in {line}"));
    Duration::from_secs_f64(stamp.parse().unwrap())
}

const QUIET: &[&str] = &[
    "--drain-delay",
    "20s",
    "--drain-quiet",
    "1s",
    "--kill-after",
    "25s",
];

#[test]
fn without_traffic_the_stop_comes_one_quiet_period_after_the_drain_starts() {
    for (mode, who) in [
        (Mode::Pid1, As::Root),
        (Mode::Pid1, As::Nobody),
        (Mode::Parent, As::Root),
    ] {
        let Some(mut app) = start(mode, who, QUIET, &[], "own") else {
            return;
        };
        let sent = app.run.signal(SIGTERM);
        let stamp = stop_stamp(&app.run, secs(15.0));
        let seen = app.run.elapsed() - sent;
        let out = app.run.wait(secs(15.0));
        assert!(
            stamp >= secs(0.95),
            "{mode:?} {who:?}: stopped at {stamp:?}"
        );
        assert!(
            seen < secs(6.0),
            "{mode:?} {who:?}: stopped {seen:?} after SIGTERM"
        );
        assert!(
            out.stderr.contains(&format!(
                "--drain-quiet: watching the app's TCP port(s) {}",
                app.port
            )),
            "{mode:?} {who:?}: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(", 0 in flight: stopping at t+"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("of at most 20s"), "{}", out.stderr);
        assert_eq!(out.code, Some(143), "{mode:?} {who:?}: {}", out.stderr);
    }
}

#[test]
fn each_new_connection_restarts_the_quiet_period() {
    let Some(mut app) = start(Mode::Pid1, As::Root, QUIET, &[], "own") else {
        return;
    };
    let sent = app.run.signal(SIGTERM);
    // Short connections the app answers and closes, every 0.4 s for 2.5 s:
    // each one is new, none stays open.
    let mut last = Duration::ZERO;
    while app.run.elapsed() - sent < secs(2.5) {
        last = app.run.elapsed();
        get(&app.host, app.port, "/").unwrap();
        std::thread::sleep(secs(0.4));
    }
    let stamp = stop_stamp(&app.run, secs(15.0));
    let stop = sent + stamp;
    assert!(
        stop + secs(0.1) >= last + secs(1.0),
        "stopped {:?} after the last new connection",
        stop.saturating_sub(last)
    );
    let out = app.run.wait(secs(15.0));
    assert!(app_elapsed_ok(&out, sent, secs(9.0)), "{}", out.stderr);
}

fn app_elapsed_ok(out: &Outcome, sent: Duration, within: Duration) -> bool {
    out.code == Some(143) && out.elapsed < sent + within
}

#[test]
fn a_request_in_flight_keeps_the_drain_open_until_it_is_answered() {
    for who in [As::Root, As::Nobody] {
        let options = [
            "--drain-delay",
            "20s",
            "--drain-quiet",
            "0.5s",
            "--kill-after",
            "25s",
        ];
        let Some(mut app) = start(Mode::Pid1, who, &options, &[], "own") else {
            return;
        };
        let (host, port) = (app.host.clone(), app.port);
        let asked = Instant::now();
        let request = std::thread::spawn(move || get(&host, port, "/sleep/3"));
        // The request has reached the app (a fixed 3 s from here).
        std::thread::sleep(secs(0.3));
        let sent = app.run.signal(SIGTERM);
        let answer = request.join().unwrap();
        let took = asked.elapsed();
        assert!(
            answer.as_deref().is_ok_and(|a| a.ends_with("done\n")),
            "{who:?}: the request in flight was lost: {answer:?}"
        );
        assert!(took >= secs(3.0));
        let stamp = stop_stamp(&app.run, secs(15.0));
        assert!(stamp >= secs(2.5), "{who:?}: stopped at {stamp:?}");
        let out = app.run.wait(secs(15.0));
        assert!(
            app_elapsed_ok(&out, sent, secs(10.0)),
            "{who:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn the_maximum_holds_while_a_request_never_ends() {
    let options = [
        "--drain-delay",
        "2s",
        "--drain-quiet",
        "0.5s",
        "--kill-after",
        "10s",
    ];
    let Some(mut app) = start(Mode::Pid1, As::Root, &options, &[], "own") else {
        return;
    };
    let (host, port) = (app.host.clone(), app.port);
    let _request = std::thread::spawn(move || get(&host, port, "/sleep/60"));
    std::thread::sleep(secs(0.3));
    let sent = app.run.signal(SIGTERM);
    let stamp = stop_stamp(&app.run, secs(15.0));
    assert!(stamp >= secs(2.0), "stopped at {stamp:?}");
    let out = app.run.wait(secs(15.0));
    assert!(
        out.stderr
            .contains("drain delay (the maximum) over with 1 connection(s) carrying a request"),
        "{}",
        out.stderr
    );
    assert!(app_elapsed_ok(&out, sent, secs(8.0)), "{}", out.stderr);
}

#[test]
fn the_minimum_holds_without_traffic() {
    let options = [
        "--drain-delay",
        "20s",
        "--drain-quiet",
        "0.3s",
        "--drain-min",
        "2.5s",
        "--kill-after",
        "25s",
    ];
    let Some(mut app) = start(Mode::Pid1, As::Root, &options, &[], "own") else {
        return;
    };
    let sent = app.run.signal(SIGTERM);
    let stamp = stop_stamp(&app.run, secs(15.0));
    assert!(stamp >= secs(2.5), "stopped at {stamp:?}");
    let out = app.run.wait(secs(15.0));
    assert!(app_elapsed_ok(&out, sent, secs(8.0)), "{}", out.stderr);
}

#[test]
fn without_sight_of_the_apps_sockets_it_warns_once_and_keeps_the_fixed_delay() {
    // The app in a network namespace of its own: drainit sees none of its sockets.
    let options = [
        "--drain-delay",
        "2s",
        "--drain-quiet",
        "0.3s",
        "--kill-after",
        "10s",
    ];
    let Some(app) = start(
        Mode::Pid1,
        As::Root,
        &options,
        &["unshare", "--net"],
        "0.0.0.0",
    ) else {
        return;
    };
    falls_back_once(app, "falling back to the fixed delay of 2s");
}

#[test]
fn without_access_to_the_apps_descriptors_it_warns_once_and_keeps_the_fixed_delay() {
    // drainit as uid 65534, the app (same uid) not dumpable: only root could
    // read its /proc/PID/fd.
    let options = [
        "--drain-delay",
        "2s",
        "--drain-quiet",
        "0.3s",
        "--kill-after",
        "10s",
    ];
    let Some(app) = start(Mode::Pid1, As::Nobody, &options, &[], "own --undumpable") else {
        return;
    };
    falls_back_once(app, "/fd: permission denied");
}

#[test]
fn health_checks_from_ignored_addresses_never_keep_the_drain_open() {
    // A checker from 127.0.0.2 every 0.2 s, for the whole drain: ignored,
    // the drain ends after one quiet period; not ignored, it runs to the maximum.
    for ignore in [true, false] {
        let mut options = vec![
            "--drain-delay",
            "4s",
            "--drain-quiet",
            "0.6s",
            "--kill-after",
            "10s",
        ];
        if ignore {
            options.extend(["--drain-ignore-from", "127.0.0.2/32,10.0.0.0/8"]);
        }
        let Some(mut app) = start(Mode::Pid1, As::Root, &options, &[], "own") else {
            return;
        };
        let mut checks = checker("127.0.0.2", &app.host, app.port, secs(0.2));
        // The checker is at work before the drain starts.
        std::thread::sleep(secs(0.5));
        let sent = app.run.signal(SIGTERM);
        let stamp = stop_stamp(&app.run, secs(15.0));
        let _ = checks.kill();
        let _ = checks.wait();
        let out = app.run.wait(secs(15.0));
        if ignore {
            assert!(stamp >= secs(0.55), "stopped at {stamp:?}");
            assert!(stamp < secs(3.0), "the checks kept it open: {stamp:?}");
            assert!(
                out.stderr.contains("0 in flight: stopping"),
                "{}",
                out.stderr
            );
        } else {
            assert!(
                stamp >= secs(4.0),
                "not ignored, the checks count: {stamp:?}"
            );
        }
        assert!(app_elapsed_ok(&out, sent, secs(9.0)), "{}", out.stderr);
    }
}

#[test]
fn ready_fail_after_keeps_ready_and_the_drain_file_until_its_time() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("rfa");
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let file = dir.path("draining");
    let mut r = Drainit::new(Mode::Pid1)
        .args(&[
            "--health-listen",
            &listen,
            "--drain-file",
            &dir.str("draining"),
            "--drain-delay",
            "3s",
            "--ready-fail-after",
            "1.5s",
        ])
        .app(&["--ready", &dir.str("ready")])
        .spawn();
    r.ready(&dir.path("ready"));
    let sent = r.signal(SIGTERM);
    r.wait_for_log("drain started", 1, secs(10.0));
    // Still ready, with no drain file, right after the drain started.
    let early = ready_code(port);
    let checked = r.elapsed();
    assert_eq!(early, Some(200), "{}", r.stderr());
    if checked - sent < secs(1.5) {
        assert!(!file.exists(), "the drain file came before its time");
    }
    assert!(wait_for_file(&file, secs(10.0)));
    let file_at = r.elapsed() - sent;
    assert_eq!(ready_code(port), Some(503));
    assert!(file_at >= secs(1.5), "drain file at {file_at:?}");
    let out = r.wait(secs(15.0));
    assert!(
        out.stderr
            .contains("t+1.5s: --ready-fail-after over; /ready answers 503; drain file"),
        "{}",
        out.stderr
    );
    assert_eq!(out.code, Some(0), "{}", out.stderr);
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// The status code of GET /ready.
fn ready_code(port: u16) -> Option<u16> {
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, secs(5.0)).ok()?;
    s.set_read_timeout(Some(secs(5.0))).unwrap();
    s.write_all(b"GET /ready HTTP/1.0\r\n\r\n").ok()?;
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn explain_shows_min_quiet_and_max() {
    let out = Drainit::new(Mode::Parent)
        .args(&[
            "--explain",
            "--drain-delay",
            "30s",
            "--drain-quiet",
            "1s",
            "--drain-min",
            "2s",
            "--stop-timeout",
            "35s",
        ])
        .run(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("at least 2s has passed (--drain-min), no new connection has reached the app's ports for 1s (--drain-quiet) and none carries a request; at the latest at t+30s (--drain-delay)"),
        "{text}"
    );
    assert!(
        text.contains("the app keeps serving for at most 30s"),
        "{text}"
    );
}

#[test]
fn an_idle_drainit_with_drain_quiet_makes_no_wake_up() {
    // Sampling runs during a drain only.
    let Some(mut app) = start(Mode::Pid1, As::Root, QUIET, &[], "own") else {
        return;
    };
    let pid = app.run.pid();
    wait_until(secs(10.0), || {
        std::fs::read_to_string(format!("/proc/{pid}/wchan"))
            .ok()?
            .contains("signalfd_read")
            .then_some(())
    })
    .expect("drainit sleeps reading its signalfd");
    let before = context_switches(pid);
    std::thread::sleep(secs(2.0));
    assert_eq!(context_switches(pid) - before, 0);
    app.run.signal(SIGTERM);
    assert_eq!(app.run.wait(secs(15.0)).code, Some(143));
}

#[test]
fn health_checks_further_apart_than_the_quiet_period_let_the_drain_end() {
    // The other half of the rule: checks from the traffic's own address (an
    // ALB's, HAProxy's) count as new connections, so a quiet period shorter
    // than their interval (here 1.2 s against 0.6 s) lets the drain end.
    let options = [
        "--drain-delay",
        "8s",
        "--drain-quiet",
        "0.6s",
        "--kill-after",
        "12s",
    ];
    let Some(mut app) = start(Mode::Pid1, As::Root, &options, &[], "own") else {
        return;
    };
    let mut checks = checker("127.0.0.1", &app.host, app.port, secs(1.2));
    std::thread::sleep(secs(0.5));
    let sent = app.run.signal(SIGTERM);
    let stamp = stop_stamp(&app.run, secs(15.0));
    let _ = checks.kill();
    let _ = checks.wait();
    let out = app.run.wait(secs(15.0));
    assert!(stamp >= secs(0.55), "stopped at {stamp:?}");
    assert!(stamp < secs(6.0), "the checks kept it open: {stamp:?}");
    assert!(
        out.stderr.contains("0 in flight: stopping"),
        "{}",
        out.stderr
    );
    assert!(app_elapsed_ok(&out, sent, secs(12.0)), "{}", out.stderr);
}

#[test]
fn traffic_to_the_same_port_on_another_address_does_not_count() {
    // Another listener on the app's port number, on an address the app does
    // not listen on, kept busy with new connections: not the app's traffic.
    let options = [
        "--drain-delay",
        "4s",
        "--drain-quiet",
        "0.6s",
        "--kill-after",
        "10s",
    ];
    let Some(mut app) = start(Mode::Pid1, As::Root, &options, &[], "own") else {
        return;
    };
    let other = std::net::TcpListener::bind(("127.0.0.1", app.port)).unwrap();
    std::thread::spawn(move || {
        for mut conn in other.incoming().flatten() {
            // Read the request first: closing with it unread would be a reset.
            let mut request = [0u8; 512];
            let _ = conn.read(&mut request);
            let _ = conn.write_all(b"HTTP/1.0 200 OK\r\n\r\n");
        }
    });
    let mut checks = checker("127.0.0.2", "127.0.0.1", app.port, secs(0.2));
    std::thread::sleep(secs(0.5));
    let sent = app.run.signal(SIGTERM);
    let stamp = stop_stamp(&app.run, secs(15.0));
    let _ = checks.kill();
    let _ = checks.wait();
    let out = app.run.wait(secs(15.0));
    assert!(
        stamp < secs(3.0),
        "another address's traffic kept it open: {stamp:?}"
    );
    assert!(app_elapsed_ok(&out, sent, secs(9.0)), "{}", out.stderr);
}

/// SIGTERM to a drain that cannot see the app's connections: one warning
/// (containing `why`), and the fixed delay (2s) runs to its end.
fn falls_back_once(mut app: App, why: &str) {
    let sent = app.run.signal(SIGTERM);
    let stamp = stop_stamp(&app.run, secs(15.0));
    assert!(stamp >= secs(2.0), "stopped at {stamp:?}");
    let out = app.run.wait(secs(15.0));
    let warnings: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("cannot see the app's connections"))
        .collect();
    assert_eq!(warnings.len(), 1, "{}", out.stderr);
    assert!(warnings[0].contains(why), "{}", warnings[0]);
    assert!(app_elapsed_ok(&out, sent, secs(8.0)), "{}", out.stderr);
}
