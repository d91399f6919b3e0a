//! An idle drainit sleeps in one blocking read of its signalfd (no timeout):
//! no periodic wake-up, so no context switch at all.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

#[test]
fn an_idle_drainit_makes_zero_context_switches_over_5s() {
    let mut runs = Vec::new();
    for mode in BOTH {
        if can_run(mode) {
            runs.push((mode, Drainit::new(mode).args(&["sleep", "1000"]).spawn()));
        }
    }
    let mut before = Vec::new();
    for (_, r) in runs.iter_mut() {
        r.app_pid();
        // Let start-up settle: drainit is idle once it sleeps reading its signalfd.
        let pid = r.pid();
        wait_until(secs(10.0), || {
            std::fs::read_to_string(format!("/proc/{pid}/wchan"))
                .ok()?
                .contains("signalfd_read")
                .then_some(())
        })
        .expect("drainit sleeps reading its signalfd");
        before.push(context_switches(pid));
    }
    std::thread::sleep(secs(5.0));
    for ((mode, r), before) in runs.iter_mut().zip(before) {
        let after = context_switches(r.pid());
        assert_eq!(
            after - before,
            0,
            "{mode:?}: {} context switches while idle",
            after - before
        );
    }
    for (_, mut r) in runs {
        r.signal(SIGTERM);
        assert_eq!(r.wait(secs(10.0)).code, Some(143));
    }
}
