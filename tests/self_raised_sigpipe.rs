//! A log line written to a broken stderr raises SIGPIPE on drainit itself:
//! drainit says nothing about it (a line about it would raise the next one, a
//! loop at 100 % CPU), keeps supervising, and exits with the app's code.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::Instant;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: i32) -> Option<u64> {
    let f = stat(pid)?;
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

#[test]
fn a_broken_stderr_costs_no_cpu_and_keeps_the_app_code() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let (reader, writer) = std::io::pipe().unwrap();
        // The log driver has gone before drainit writes its first line.
        drop(reader);
        let mut command = match mode {
            Mode::Pid1 => {
                let mut c = Command::new("unshare");
                c.args(["--pid", "--fork", "--mount-proc"]).arg(bin());
                c
            }
            Mode::Parent => Command::new(bin()),
        };
        let mut child = command
            .args(["-v", "--", "sh", "-c", "sleep 3; exit 3"])
            .env_remove("DRAINIT_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(writer)
            .spawn()
            .unwrap();
        let started = Instant::now();
        let me = child.id() as i32;
        let drainit = match mode {
            Mode::Parent => me,
            Mode::Pid1 => wait_until(secs(10.0), || {
                children_of(me)
                    .into_iter()
                    .find(|p| comm(*p) == Some(bin_comm()))
            })
            .expect("drainit under unshare"),
        };
        // The last CPU reading before drainit is gone.
        let mut ticks = 0;
        let status = loop {
            if let Some(t) = cpu_ticks(drainit) {
                ticks = t;
            }
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if started.elapsed() > secs(20.0) {
                let _ = child.kill();
                panic!("{mode:?}: drainit did not exit");
            }
            std::thread::sleep(secs(0.02));
        };
        assert_eq!(status.code(), Some(3), "{mode:?}: the app's code");
        // A spinning drainit burns ~100 ticks a second; an idle one ~0.
        assert!(
            ticks < 20,
            "{mode:?}: drainit used {ticks} clock ticks of CPU in {:?}",
            started.elapsed()
        );
    }
}
