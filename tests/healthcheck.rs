//! `drainit --healthcheck`: 0 when healthy, 1 when not, one line on stdout;
//! unhealthy while anything is at the drain-file path (never followed, never
//! blocked on, its content escaped and bounded) or when that cannot be told,
//! and when --url (parsed strictly) does not answer a well-formed 2xx status
//! line in time (refused, hanging, 503). The whole run, name lookup included,
//! keeps to --timeout, and SIGTERM ends it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

/// A local HTTP server that answers every request with `status` (or, with
/// `None`, accepts and never answers). Returns its URL.
fn server(status: Option<u16>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let Some(code) = status else {
                held.push(stream);
                continue;
            };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = write!(
                stream,
                "HTTP/1.1 {code} Whatever\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
        }
    });
    format!("http://127.0.0.1:{port}/healthz")
}

/// A URL that refuses connections. The port stays bound on 127.0.0.1 for as
/// long as the listener lives, so no other test can take it, and nothing
/// listens on 127.0.0.2 at that port.
fn refused() -> (String, TcpListener) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    (format!("http://127.0.0.2:{port}/healthz"), listener)
}

fn check(args: &[&str]) -> Outcome {
    Drainit::new(Mode::Parent)
        .arg("--healthcheck")
        .args(args)
        .run(secs(20.0))
}

fn one_line(out: &Outcome) -> String {
    let text = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(text.lines().count(), 1, "one line on stdout: {text:?}");
    text.trim().to_string()
}

#[test]
fn a_2xx_answer_is_healthy() {
    for code in [200, 204] {
        let url = server(Some(code));
        let out = check(&["--url", &url]);
        assert_eq!(out.code, Some(0), "{code}: {}", out.stderr);
        assert_eq!(
            one_line(&out),
            format!("healthy: GET {url} answered {code}")
        );
    }
}

#[test]
fn a_503_is_unhealthy() {
    let url = server(Some(503));
    let out = check(&["--url", &url]);
    assert_eq!(out.code, Some(1));
    assert_eq!(one_line(&out), format!("unhealthy: GET {url} answered 503"));
}

#[test]
fn a_refused_connection_is_unhealthy() {
    let (url, _held) = refused();
    let out = check(&["--url", &url]);
    assert_eq!(out.code, Some(1));
    assert!(one_line(&out).contains("refused"), "{}", one_line(&out));
}

#[test]
fn a_hanging_server_is_unhealthy_after_the_timeout() {
    let url = server(None);
    let out = check(&["--url", &url, "--timeout", "700ms"]);
    assert_eq!(out.code, Some(1));
    assert!(
        one_line(&out).contains("no answer within 700ms"),
        "{}",
        one_line(&out)
    );
    assert!(out.elapsed >= secs(0.7), "gave up early: {:?}", out.elapsed);
    assert!(out.elapsed < secs(5.0), "hung: {:?}", out.elapsed);
    // The timeout also comes from DRAINIT_TIMEOUT.
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_TIMEOUT", "300ms")
        .env("DRAINIT_URL", &url)
        .arg("--healthcheck")
        .run(secs(20.0));
    assert_eq!(out.code, Some(1));
    assert!(
        one_line(&out).contains("no answer within 300ms"),
        "{}",
        one_line(&out)
    );
}

#[test]
fn the_drain_file_makes_it_unhealthy_whatever_the_url_says() {
    let dir = Scratch::new("hc");
    let file = dir.str("draining");
    let url = server(Some(200));
    let out = check(&["--drain-file", &file, "--url", &url]);
    assert_eq!(out.code, Some(0), "no drain file yet");
    std::fs::write(&file, "signal=SIGTERM\ntime=2026-11-22T08:00:00.000Z\n").unwrap();
    let out = check(&["--drain-file", &file, "--url", &url]);
    assert_eq!(out.code, Some(1));
    assert!(
        one_line(&out).starts_with(&format!("unhealthy: draining: {file} exists")),
        "{}",
        one_line(&out)
    );
    // From the environment, as a task definition sets it.
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_DRAIN_FILE", &file)
        .arg("--healthcheck")
        .run(secs(10.0));
    assert_eq!(out.code, Some(1));
    std::fs::remove_file(&file).unwrap();
    let out = Drainit::new(Mode::Parent)
        .env("DRAINIT_DRAIN_FILE", &file)
        .arg("--healthcheck")
        .run(secs(10.0));
    assert_eq!(out.code, Some(0));
}

#[test]
fn the_health_check_turns_unhealthy_during_a_real_drain() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("hcdrain");
    let file = dir.str("draining");
    let mut r = Drainit::new(Mode::Pid1)
        .args(&[
            "--drain-file",
            &file,
            "--drain-delay",
            "10s",
            "--kill-after",
            "20s",
        ])
        .app(&["--ready", &dir.str("ready")])
        .spawn();
    r.ready(&dir.path("ready"));
    assert_eq!(check(&["--drain-file", &file]).code, Some(0));
    r.signal(SIGTERM);
    assert!(wait_for_file(&dir.path("draining"), secs(5.0)));
    assert_eq!(check(&["--drain-file", &file]).code, Some(1));
    r.signal(SIGTERM);
    assert_eq!(r.wait(secs(10.0)).code, Some(0));
}

/// A local server that answers every request with `answer`, byte for byte.
fn raw_server(answer: &'static [u8]) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(answer);
        }
    });
    format!("http://127.0.0.1:{port}/healthz")
}

#[test]
fn a_fifo_at_the_drain_file_path_answers_within_the_timeout() {
    let dir = Scratch::new("hcfifo");
    let fifo = dir.path("draining");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let out = Drainit::new(Mode::Parent)
        .args(&["--healthcheck", "--drain-file", &dir.str("draining")])
        .args(&["--timeout", "1s"])
        .run(secs(10.0));
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(out.elapsed < secs(5.0), "took {:?}", out.elapsed);
    assert_eq!(
        one_line(&out),
        format!("unhealthy: draining: {} exists (a FIFO)", fifo.display())
    );
}

#[test]
fn sigterm_ends_a_stuck_health_check() {
    // A server that accepts and never answers, and a long timeout: stuck.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let mut r = Drainit::new(Mode::Parent)
        .args(&["--healthcheck", "--timeout", "60s", "--url"])
        .arg(format!("http://127.0.0.1:{port}/healthz"))
        .spawn();
    let _held = wait_until(secs(10.0), || listener.accept().ok()).expect("no connection");
    // The health check runs with the signal state it was started with.
    // All but SIGPIPE (blocked, so that a closed stdout is an error, not a
    // death). Retried: musl blocks signals for a moment while it starts a thread.
    let pid = r.pid();
    let unblocked = wait_until(secs(5.0), || {
        (status_field(pid, "SigBlk").as_deref() == Some("0000000000001000")).then_some(())
    });
    assert!(
        unblocked.is_some(),
        "signals still blocked: {:?}",
        status_field(pid, "SigBlk")
    );
    let sent = r.elapsed();
    r.signal(SIGTERM);
    let out = r.wait(secs(10.0));
    assert_eq!(out.signal, Some(SIGTERM), "{out:?}");
    assert!(out.elapsed - sent < secs(5.0), "{:?}", out.elapsed - sent);
}

/// Runs `drainit args` in a network and mount namespace of its own where the
/// only name server (127.0.0.1:53, named by a bind-mounted resolv.conf) never
/// answers. Returns the outcome and how long drainit itself took.
fn with_a_silent_name_server(args: &[&str]) -> (Outcome, Duration) {
    let dir = Scratch::new("dns");
    std::fs::write(dir.path("resolv.conf"), "nameserver 127.0.0.1\n").unwrap();
    let script = r#"
set -e
ip link set lo up
mount --bind "$0/resolv.conf" /etc/resolv.conf
python3 -c 'import socket,sys,time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 53))
open(sys.argv[1], "w").close()
time.sleep(120)' "$0/ready" &
while [ ! -e "$0/ready" ]; do sleep 0.01; done
set +e
start=$(date +%s%N)
"$@"
rc=$?
end=$(date +%s%N)
echo "took-ms $(( (end - start) / 1000000 ))" >&2
kill $!
exit $rc
"#;
    let out = Drainit::new(Mode::Parent)
        .through(&[
            "unshare",
            "--net",
            "--mount",
            "sh",
            "-c",
            script,
            &dir.str(""),
        ])
        .args(args)
        .run(secs(30.0));
    let took = out
        .stderr
        .lines()
        .find_map(|l| l.strip_prefix("took-ms "))
        .unwrap_or_else(|| panic!("no timing: {}", out.stderr))
        .parse::<u64>()
        .unwrap();
    (out, Duration::from_millis(took))
}

#[test]
fn a_name_lookup_that_hangs_is_unhealthy_within_the_timeout() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let url = "http://drainit-test.invalid:8080/healthz";
    let (out, took) =
        with_a_silent_name_server(&["--healthcheck", "--timeout", "1s", "--url", url]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert_eq!(
        one_line(&out),
        format!("unhealthy: GET {url}: cannot resolve drainit-test.invalid within 1s")
    );
    assert!(took >= secs(1.0), "gave up early: {took:?}");
    assert!(took < secs(3.5), "the lookup was not bounded: {took:?}");
}

#[test]
fn it_is_unhealthy_when_it_cannot_tell() {
    let dir = Scratch::new("hccannot");
    // A path that loops, and a path through a regular file.
    std::os::unix::fs::symlink("loop", dir.path("loop")).unwrap();
    std::fs::write(dir.path("file"), "").unwrap();
    // (The error's words are the C library's: musl's or glibc's.)
    for (path, errors) in [
        (
            dir.path("loop/draining"),
            &["symbolic link loop", "too many levels of symbolic links"][..],
        ),
        (dir.path("file/draining"), &["not a directory"][..]),
    ] {
        let out = check(&["--drain-file", &path.to_string_lossy()]);
        assert_eq!(out.code, Some(1), "{}", path.display());
        let line = one_line(&out);
        let expected = |error: &&str| {
            line == format!(
                "unhealthy: cannot check drain file {}: {error}",
                path.display()
            )
        };
        assert!(errors.iter().any(expected), "{line}");
    }
}

#[test]
fn as_another_user_it_is_unhealthy_when_it_cannot_tell() {
    // As another user: a directory it may not enter, a file it may not read.
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("hcnobody");
    std::fs::create_dir(dir.path("private")).unwrap();
    std::fs::set_permissions(dir.path("private"), std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::write(dir.path("private/draining"), "signal=SIGTERM\n").unwrap();
    std::fs::write(dir.path("unreadable"), "signal=SIGTERM\n").unwrap();
    std::fs::set_permissions(
        dir.path("unreadable"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let nobody = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
    ];
    for (name, expected) in [
        (
            "private/draining",
            format!(
                "unhealthy: cannot check drain file {}: permission denied",
                dir.path("private/draining").display()
            ),
        ),
        (
            "unreadable",
            format!(
                "unhealthy: draining: {} exists (cannot read it: permission denied)",
                dir.path("unreadable").display()
            ),
        ),
    ] {
        let out = Drainit::new(Mode::Parent)
            .through(&nobody)
            .args(&["--healthcheck", "--drain-file", &dir.str(name)])
            .run(secs(10.0));
        assert_eq!(out.code, Some(1), "{name}: {}", out.stderr);
        assert_eq!(one_line(&out), expected);
    }
}

#[test]
fn the_drain_file_content_is_escaped_and_bounded() {
    let dir = Scratch::new("hcescape");
    let file = dir.path("draining");
    let mut content = b"signal=SIGTERM\n\x1b]0;pwned\x07\x1b[2J\r".to_vec();
    content.extend(std::iter::repeat_n(b'A', 100_000));
    std::fs::write(&file, &content).unwrap();
    let out = check(&["--drain-file", &dir.str("draining")]);
    assert_eq!(out.code, Some(1));
    let line = one_line(&out);
    assert!(
        line.starts_with(&format!(
            "unhealthy: draining: {} exists (signal=SIGTERM \\u{{1b}}]0;pwned\\u{{7}}\\u{{1b}}[2J AAAA",
            file.display()
        )),
        "{line}"
    );
    assert!(line.ends_with("A...)"), "{line}");
    assert!(!line.bytes().any(|b| b.is_ascii_control()), "{line:?}");
    assert!(line.len() < 300, "{} bytes", line.len());
}

#[test]
fn the_status_line_is_read_strictly() {
    for answer in [
        &b"HTTP/1.1 +200 OK\r\n\r\n"[..],
        b"HTTP/1.1  200 OK\r\n\r\n",
        b"HTTP/banana 200 OK\r\n\r\n",
        b"HTTP/1.1 200OK\r\n\r\n",
    ] {
        let url = raw_server(answer);
        let out = check(&["--url", &url]);
        assert_eq!(out.code, Some(1), "{:?}", String::from_utf8_lossy(answer));
        assert!(
            one_line(&out).starts_with(&format!("unhealthy: GET {url}: not an HTTP answer: '")),
            "{}",
            one_line(&out)
        );
    }
    let url = raw_server(b"HTTP/1.1 200 OK\r\n\r\n");
    assert_eq!(check(&["--url", &url]).code, Some(0));
}

#[test]
fn the_url_is_parsed_strictly() {
    // The scheme in any case.
    let url = server(Some(200)).replacen("http://", "HTTP://", 1);
    let out = check(&["--url", &url]);
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(one_line(&out), format!("healthy: GET {url} answered 200"));
    // A signed port, a fragment, a space, user information: refused up front.
    let port = url
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap()
        .to_string();
    for (bad, says) in [
        (format!("http://127.0.0.1:+{port}/healthz"), "port"),
        (format!("http://127.0.0.1:{port}/healthz#top"), "fragment"),
        (format!("http://127.0.0.1:{port}/health z"), "spaces"),
        (
            format!("http://user:pw@127.0.0.1:{port}/"),
            "user information",
        ),
    ] {
        let out = check(&["--url", &bad]);
        assert_eq!(out.code, Some(125), "{bad}: {}", out.stderr);
        assert!(out.stdout.is_empty());
        assert_eq!(out.stderr_lines().len(), 1, "{}", out.stderr);
        assert!(
            out.stderr.starts_with("drainit: ")
                && out.stderr.contains("--url: ")
                && out.stderr.contains(says),
            "{bad}: {}",
            out.stderr
        );
    }
}
