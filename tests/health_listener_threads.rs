//! The health listener's threads are drainit's choice and made before the
//! app starts: their stacks do not follow `RUST_MIN_STACK`; a container
//! that cannot give them is refused (125) rather than run without probes;
//! `/live` never waits for `/ready`'s check of the app; and hanging name
//! lookups never cost a thread per probe.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
mod probe;
use common::*;
use probe::*;

use std::net::{TcpListener, UdpSocket};
use std::time::{Duration, Instant};

#[test]
fn rust_min_stack_in_the_environment_does_not_size_drainits_threads() {
    // A host name: the lookup (musl reads /etc/hosts) runs in a worker thread.
    let app = healthy_app();
    let url = format!("http://localhost:{app}/healthz");
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut r = Drainit::new(mode)
            .env("RUST_MIN_STACK", "4096")
            .args(&["--health-listen", &listen, "--url", &url, "--timeout", "5s"])
            .args(&["sleep", "1000"])
            .spawn();
        r.app_pid();
        wait_listening(port);
        for _ in 0..3 {
            let (code, body) = path(port, "/ready");
            assert_eq!(
                (code, body.as_str()),
                (
                    200,
                    format!("ready: healthy: GET {url} answered 200\n").as_str()
                ),
                "{mode:?}: {}",
                r.stderr()
            );
        }
        assert!(r.alive(), "{mode:?}: drainit died: {}", r.stderr());
        r.signal(SIGTERM);
        let out = r.wait(secs(10.0));
        assert_eq!(out.code, Some(143), "{mode:?}: {}", out.stderr);
    }
    let out = Drainit::new(Mode::Parent)
        .env("RUST_MIN_STACK", "4096")
        .args(&["--healthcheck", "--url", &url])
        .run(secs(10.0));
    assert_eq!(out.code, Some(0), "--healthcheck: {out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("healthy: GET {url} answered 200\n")
    );
}

/// drainit as user `uid` with RLIMIT_NPROC at `nproc` (the user's tasks:
/// drainit, its threads, the app), as a plain parent (a refusal is seen at
/// once; PID 1 or not, a thread is made the same way).
fn limited(uid: &str, nproc: usize, args: &[&str]) -> Running {
    let limit = format!("--nproc={nproc}");
    Drainit::new(Mode::Parent)
        .through(&[
            "prlimit",
            &limit,
            "setpriv",
            "--reuid",
            uid,
            "--regid",
            uid,
            "--clear-groups",
        ])
        .args(args)
        .spawn()
}

/// Until drainit has exited (`None`) or its app runs (`Some(app's pid)`).
fn refused_or_running(r: &mut Running) -> Option<i32> {
    let drainit = r.pid();
    wait_until(secs(10.0), || {
        if !r.alive() {
            return Some(None);
        }
        children_of(drainit).into_iter().next().map(Some)
    })
    .unwrap_or_else(|| panic!("neither refused nor running: {}", r.stderr()))
}

#[test]
fn no_thread_for_the_listener_is_a_refusal_before_the_app_starts() {
    // Root, to take another user's id.
    if !can_run(Mode::Pid1) {
        return;
    }
    let uid = lonely_uid(0);
    let mut served = 0;
    for nproc in [2, 1, 3, 4] {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut r = limited(&uid, nproc, &["--health-listen", &listen, "sleep", "1000"]);
        match refused_or_running(&mut r) {
            Some(_) => {
                // The app runs: so does its listener.
                let live = wait_until(secs(5.0), || {
                    try_get_within(port, "GET /live HTTP/1.0\r\n\r\n", secs(2.0))
                });
                assert_eq!(
                    live,
                    Some((200, "live\n".to_string())),
                    "nproc={nproc}: the app runs with nothing on the port: {}",
                    r.stderr()
                );
                served += 1;
                r.signal(SIGTERM);
                assert_eq!(r.wait(secs(10.0)).code, Some(143), "nproc={nproc}");
            }
            None => {
                let out = r.wait(secs(10.0));
                assert_eq!(out.code, Some(125), "nproc={nproc}: {}", out.stderr);
                // One error line (after the start line, when drainit got that far).
                let errors = out
                    .stderr_lines()
                    .into_iter()
                    .filter(|l| !l.starts_with("drainit: version "))
                    .count();
                assert_eq!(errors, 1, "nproc={nproc}: {}", out.stderr);
                if nproc == 1 {
                    // The listener's thread is the first task drainit needs.
                    assert_eq!(
                        out.stderr.trim_end(),
                        format!(
                            "drainit: error: --health-listen {listen}: cannot start the health listener: cannot create its thread: resource temporarily unavailable"
                        )
                    );
                }
            }
        }
    }
    assert!(served >= 1, "the app never ran, whatever the limit");
}

#[test]
fn live_never_waits_for_the_apps_check_whatever_threads_can_be_made() {
    if !can_run(Mode::Pid1) {
        return;
    }
    // The app's health endpoint accepts and never answers.
    let app = TcpListener::bind("127.0.0.1:0").unwrap();
    app.set_nonblocking(true).unwrap();
    let url = format!(
        "http://127.0.0.1:{}/healthz",
        app.local_addr().unwrap().port()
    );
    let uid = lonely_uid(1);
    let mut served = 0;
    // 3: drainit, the app and one thread; 4 and 5: room for more.
    for nproc in 3..=5 {
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let args = [
            "--health-listen",
            &listen,
            "--url",
            &url,
            "--timeout",
            "4s",
            "sleep",
            "1000",
        ];
        let mut r = limited(&uid, nproc, &args);
        if refused_or_running(&mut r).is_none() {
            let out = r.wait(secs(10.0));
            assert_eq!(out.code, Some(125), "nproc={nproc}: {}", out.stderr);
            continue;
        }
        served += 1;
        wait_listening(port);
        let ready = std::thread::spawn(move || path(port, "/ready"));
        // Hand-shake: the app's check has reached the app, which says nothing.
        let held = wait_until(secs(10.0), || app.accept().ok())
            .unwrap_or_else(|| panic!("nproc={nproc}: the app was never asked: {}", r.stderr()));
        let asked = Instant::now();
        let live = try_get_within(port, "GET /live HTTP/1.0\r\n\r\n", secs(10.0));
        let took = asked.elapsed();
        assert_eq!(live, Some((200, "live\n".to_string())), "nproc={nproc}");
        assert!(
            took < secs(1.5),
            "nproc={nproc}: /live waited {took:?} behind the app's check"
        );
        let (code, body) = ready.join().unwrap();
        assert_eq!(code, 503, "nproc={nproc}: {body}");
        drop(held);
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(143), "nproc={nproc}");
    }
    assert!(served >= 1, "the app never ran, whatever the limit");
}

#[test]
fn hanging_name_lookups_cost_no_thread_per_probe() {
    if !can_run(Mode::Pid1) {
        return;
    }
    // A name server that never answers, on a loopback address of its own
    // (named by a resolv.conf bind-mounted in drainit's mount namespace).
    let n = std::process::id();
    let server = format!("127.53.{}.{}", (n >> 8) % 250 + 1, n % 250 + 1);
    let silent = UdpSocket::bind((server.as_str(), 53)).unwrap();
    let dir = Scratch::new("lookup-leak");
    std::fs::write(
        dir.path("resolv.conf"),
        format!("nameserver {server}\noptions timeout:30 attempts:1\n"),
    )
    .unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let url = "http://drainit-test.invalid:8080/healthz";
    let mut r = Drainit::new(Mode::Pid1)
        .through(&[
            "sh",
            "-c",
            r#"mount --bind "$0" /etc/resolv.conf && exec "$@""#,
            &dir.str("resolv.conf"),
        ])
        .args(&[
            "--health-listen",
            &listen,
            "--url",
            url,
            "--timeout",
            "200ms",
        ])
        .args(&["sleep", "1000"])
        .spawn();
    r.app_pid();
    wait_listening(port);
    let drainit = r.pid();
    let mut most = 0;
    for i in 0..30 {
        let asked = Instant::now();
        let (code, body) = path(port, "/ready");
        let took = asked.elapsed();
        assert_eq!(
            (code, body.as_str()),
            (
                503,
                "not ready: unhealthy: GET http://drainit-test.invalid:8080/healthz: cannot resolve drainit-test.invalid within 200ms\n"
            ),
            "probe {i}"
        );
        assert!(took >= secs(0.2), "probe {i} answered after {took:?}");
        most = most.max(threads(drainit));
    }
    // The lookup did reach the name server (it hangs; it did not fail).
    silent
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    assert!(
        silent.recv(&mut [0u8; 512]).is_ok(),
        "no query reached the name server"
    );
    // drainit's own, the listener's and the app check's worker.
    assert!(most <= 3, "drainit had up to {most} threads");
    assert!(r.alive());
    r.signal(SIGTERM);
    assert_eq!(r.wait(secs(10.0)).code, Some(143));
}
