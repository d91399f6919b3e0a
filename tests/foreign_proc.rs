//! drainit as PID 1 of a PID namespace whose `/proc` is the host's
//! (`unshare --pid --fork` without `--mount-proc`, or a runtime that mounts
//! none): it must never signal pids read from that `/proc` (they are host
//! numbers), never send the app's group a second SIGTERM, and still reap and
//! escalate.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

#[test]
fn without_its_own_proc_it_never_signals_host_pids_nor_terms_twice() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("foreignproc");
    let (ready, log) = (dir.path("ready"), dir.path("log"));
    // The shell dies of the SIGTERM; the app it started in the same group
    // ignores it and is left behind: it must get exactly one SIGTERM, then,
    // after the grace period, SIGKILL.
    let script = format!(
        "python3 {} --ready {} --log {} --on-term ignore & wait",
        app(),
        dir.str("ready"),
        dir.str("log")
    );
    let mut r = Drainit::new(Mode::Parent)
        .through(&["unshare", "--pid", "--fork"])
        .args(&["--grace", "1s", "sh", "-c", &script])
        .spawn();
    let unshare = r.pid();
    let drainit = wait_until(secs(10.0), || {
        children_of(unshare)
            .into_iter()
            .find(|p| comm(*p) == Some(bin_comm()))
    })
    .expect("drainit under unshare");
    assert!(wait_for_file(&ready, secs(15.0)), "{}", r.stderr());
    let sent = std::time::Instant::now();
    kill(drainit, SIGTERM);
    let out = r.wait(secs(20.0));
    let took = sent.elapsed();
    assert_eq!(out.code, Some(143), "{}", out.stderr);
    assert_eq!(
        log_lines(&log),
        ["SIGTERM"],
        "the app left behind got one SIGTERM, then SIGKILL: {}",
        out.stderr
    );
    assert!(took >= secs(1.0), "the leftover had its grace: {took:?}");
    assert!(
        out.stderr.contains("/proc is not this PID namespace's"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("grace period over: SIGKILL"),
        "{}",
        out.stderr
    );
}
