//! Clients that hold the health listener's connections, or flood it, never
//! push drainit into a busy loop and never keep a real probe from its
//! answer: at a low descriptor limit EMFILE backs off, and at the limit the
//! connections dropped first are those that have sent no request.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
mod probe;
use common::*;
use probe::*;

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

#[test]
fn at_a_low_descriptor_limit_idle_clients_cause_no_busy_loop() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut r = Drainit::new(mode)
            .through(&["prlimit", "--nofile=64"])
            .args(&["--health-listen", &listen, "sleep", "1000"])
            .spawn();
        r.app_pid();
        wait_listening(port);
        let drainit = r.pid();
        // More idle clients than drainit has descriptors.
        let idle: Vec<TcpStream> = (0..100)
            .filter_map(|_| TcpStream::connect(("127.0.0.1", port)).ok())
            .collect();
        assert!(idle.len() >= 90, "{mode:?}: only {} connected", idle.len());
        // Well within the clients' 5 s deadline: nothing for drainit to do.
        let before = cpu_ticks(drainit);
        let started = Instant::now();
        std::thread::sleep(secs(2.0));
        let used = cpu_ticks(drainit) - before;
        let over = started.elapsed();
        // Clock ticks are 1/100 s: at most a tenth of the time.
        assert!(
            used * 10 <= over.as_millis() as u64 / 10,
            "{mode:?}: drainit used {used} ticks of CPU in {over:?}"
        );
        // A real probe is still answered.
        let live = try_get_within(port, "GET /live HTTP/1.0\r\n\r\n", secs(5.0));
        assert_eq!(live, Some((200, "live\n".to_string())), "{mode:?}");
        drop(idle);
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(143), "{mode:?}");
    }
}

/// One `GET /live` as a prober does it: connect (5 s), ask, read (5 s).
fn probe_live(addr: &SocketAddr) -> Result<(), String> {
    let mut s = TcpStream::connect_timeout(addr, secs(5.0)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(secs(5.0))).unwrap();
    s.write_all(b"GET /live HTTP/1.1\r\nHost: x\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut text = String::new();
    s.read_to_string(&mut text)
        .map_err(|e| format!("read: {e}"))?;
    if text.starts_with("HTTP/1.1 200 OK\r\n") && text.ends_with("\r\n\r\nlive\n") {
        Ok(())
    } else {
        Err(format!("answer: {text:?}"))
    }
}

#[test]
fn a_connection_flood_costs_a_real_prober_no_answer() {
    // The flooder another client (127.0.0.2), then on the prober's own
    // address (where only the age of a connection tells them apart).
    let floods = BOTH
        .into_iter()
        .flat_map(|mode| [(mode, [127, 0, 0, 2]), (mode, [127, 0, 0, 1])]);
    for (mode, from) in floods {
        if !can_run(mode) {
            continue;
        }
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut r = Drainit::new(mode)
            .args(&["--health-listen", &listen, "sleep", "1000"])
            .spawn();
        r.app_pid();
        wait_listening(port);
        let addr: SocketAddr = listen.parse().unwrap();
        let SocketAddr::V4(to) = addr else {
            unreachable!()
        };
        let stop = Arc::new(AtomicBool::new(false));
        let opened = Arc::new(AtomicUsize::new(0));
        // Eight threads of one flooder: each opens connections as fast as it
        // can, sends nothing, and holds its last 100.
        let flooders: Vec<_> = (0..8)
            .map(|_| {
                let (flooding, counted) = (Arc::clone(&stop), Arc::clone(&opened));
                std::thread::spawn(move || {
                    let mut held = VecDeque::new();
                    while !flooding.load(Ordering::Relaxed) {
                        if let Some(s) = connect_from(from.into(), to) {
                            held.push_back(s);
                            counted.fetch_add(1, Ordering::Relaxed);
                        }
                        if held.len() > 100 {
                            held.pop_front();
                        }
                    }
                })
            })
            .collect();
        // Hand-shake: the flood is on, past the listener's 64 connections.
        wait_until(secs(20.0), || {
            (opened.load(Ordering::Relaxed) > 100).then_some(())
        })
        .expect("the flooder connects");
        let mut failures = Vec::new();
        for i in 0..200 {
            if let Err(e) = probe_live(&addr) {
                failures.push(format!("probe {i}: {e}"));
            }
        }
        stop.store(true, Ordering::Relaxed);
        for flooder in flooders {
            flooder.join().unwrap();
        }
        let opened = opened.load(Ordering::Relaxed);
        assert!(
            failures.is_empty(),
            "{mode:?}, flood from {from:?}: {} of 200 probes failed beside {opened} flooding connections: {failures:?}; stderr: {}",
            failures.len(),
            r.stderr()
        );
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(143), "{mode:?}");
    }
}
