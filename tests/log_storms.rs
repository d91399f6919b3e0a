//! A warning that comes once per signal is written once per storm: a stream
//! of SIGTSTPs sent to the app (each a stop drainit undoes, with a warning)
//! gives the first warning, then one line with how many more there were, not
//! a line each (which is what filled a log driver's pipe).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

const SIGTSTP: i32 = 20;

/// Stops on SIGTSTP (its default), and logs each time it is continued.
const APP: &str = r#"
import os, signal, sys
log, ready = sys.argv[1], sys.argv[2]
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGCONT])
with open(ready + ".tmp", "w") as f:
    f.write(str(os.getpid()))
os.rename(ready + ".tmp", ready)
while True:
    signal.sigwaitinfo([signal.SIGCONT])
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, b"continued\n")
    os.close(fd)
"#;

const WARNING: &str = "the app was stopped by SIGTSTP (Ctrl-Z?) and nothing above drainit does job control: continuing it";

#[test]
fn a_storm_of_stops_gives_one_warning_and_a_count() {
    const STOPS: usize = 40;
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let dir = Scratch::new("storm");
        let log = dir.path("log");
        let mut r = Drainit::new(mode)
            .args(&[
                "--",
                "python3",
                "-c",
                APP,
                &dir.str("log"),
                &dir.str("ready"),
            ])
            .spawn();
        let app = r.ready(&dir.path("ready"));
        for i in 1..=STOPS {
            kill(app, SIGTSTP);
            // Hand-shake: drainit saw the stop and continued the app.
            wait_until(secs(10.0), || (lines(&log).len() >= i).then_some(()))
                .unwrap_or_else(|| panic!("{mode:?}: stop #{i} was not undone:\n{}", r.stderr()));
        }
        // The count comes once the storm is over (a second without one).
        r.wait_for_log("more times in", 1, secs(10.0));
        r.signal(SIGTERM);
        let out = r.wait(secs(10.0));
        assert_eq!(out.code, Some(143), "{mode:?}: {}", out.stderr);
        // Every stop is accounted for: the lines written, plus the counts.
        let mut written = 0;
        let mut counted = 0;
        for line in out.stderr.lines().filter(|l| l.ends_with(WARNING)) {
            let text = line.strip_prefix("drainit: warning: ").unwrap();
            written += 1;
            if text == WARNING {
                counted += 1;
                continue;
            }
            let n: usize = text
                .split(" more time")
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("{mode:?}: {line:?}"));
            assert!(
                text.ends_with(&format!(": {WARNING}")),
                "{mode:?}: {line:?}"
            );
            counted += n;
        }
        assert_eq!(
            counted, STOPS,
            "{mode:?}: stops accounted for:\n{}",
            out.stderr
        );
        assert!(
            written <= 6,
            "{mode:?}: {written} lines for {STOPS} stops:\n{}",
            out.stderr
        );
    }
}
