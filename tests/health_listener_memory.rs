//! Under a tight address-space limit (`prlimit --as`), drainit with a health
//! listener either refuses before the app starts (125, one line) or runs the
//! app and exits with its code: whatever the listener needs is taken before
//! the app is started, so that no allocation failure kills PID 1 later.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
mod probe;
use common::*;
use probe::*;

use std::collections::BTreeMap;

/// How each process of an `strace -f -e trace=execve` log ended, and what it
/// executed successfully: pid → (programs, end).
fn processes_in(trace: &str) -> BTreeMap<i32, (Vec<String>, Option<String>)> {
    let mut procs: BTreeMap<i32, (Vec<String>, Option<String>)> = BTreeMap::new();
    // An execve split by another process's line ends in "<... execve resumed>".
    let mut pending: BTreeMap<i32, String> = BTreeMap::new();
    for line in trace.lines() {
        let Some((pid, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(pid) = pid.parse::<i32>() else {
            continue;
        };
        let rest = rest.trim_start();
        let entry = procs.entry(pid).or_default();
        if let Some(call) = rest.strip_prefix("execve(\"") {
            let program = call.split('"').next().unwrap_or_default().to_string();
            if rest.ends_with("<unfinished ...>") {
                pending.insert(pid, program);
            } else if rest.ends_with("= 0") {
                entry.0.push(program);
            }
        } else if rest.starts_with("<... execve resumed>") {
            if let (Some(program), true) = (pending.remove(&pid), rest.ends_with("= 0")) {
                entry.0.push(program);
            }
        } else if let Some(end) = rest.strip_prefix("+++ ") {
            entry.1 = Some(end.trim_end_matches(" +++").to_string());
        }
    }
    procs
}

#[test]
fn under_a_tight_address_space_limit_drainit_refuses_or_keeps_the_apps_code() {
    let dir = Scratch::new("as-limit");
    let bin = bin().to_string_lossy().into_owned();
    let (mut refused, mut ran_the_app) = (0, 0);
    // From below the smallest limit drainit can be executed under to well
    // above what it needs, in steps of 4 KiB (a page) where it matters.
    let kib: Vec<u64> = (840..1400)
        .step_by(4)
        .chain([1600, 2000, 3000, 4000, 8000])
        .collect();
    // Without and with --url (whose worker thread is made at start too).
    let runs = kib
        .iter()
        .flat_map(|&kib| [(kib, None), (kib, Some("http://127.0.0.1:1/"))]);
    for (kib, url) in runs {
        let trace = dir.str(&format!("trace-{kib}-{}", url.is_some()));
        let limit = format!("--as={}", kib * 1024);
        let listen = format!("127.0.0.1:{}", free_port());
        let out = Drainit::new(Mode::Parent)
            .through(&[
                "strace",
                "-f",
                "-q",
                "-e",
                "trace=execve",
                "-o",
                &trace,
                "prlimit",
                &limit,
            ])
            .args(&["--health-listen", &listen])
            .args(&url.map_or(vec![], |url| vec!["--url", url]))
            .args(&["--", "/bin/sh", "-c", "exit 3"])
            .run(secs(30.0));
        let procs = processes_in(&std::fs::read_to_string(&trace).unwrap());
        let Some((&drainit, (_, end))) = procs.iter().find(|(_, (run, _))| run.contains(&bin))
        else {
            continue; // too little even to execute drainit: it never ran
        };
        let end = end.clone().unwrap_or_default();
        let app = procs
            .iter()
            .find(|(pid, (run, _))| **pid != drainit && !run.is_empty());
        let what = format!(
            "--as={kib}K, --url {url:?}: drainit {end}; stderr: {}",
            out.stderr
        );
        assert!(end.starts_with("exited with "), "{what}");
        let code: i32 = end.trim_start_matches("exited with ").parse().unwrap();
        match app {
            Some((_, (_, app_end))) => {
                ran_the_app += 1;
                let app_end = app_end.clone().unwrap_or_default();
                let app_code = match app_end.strip_prefix("exited with ") {
                    Some(n) => n.parse::<i32>().unwrap(),
                    None => 139, // killed by SIGSEGV: its loader had no room
                };
                assert_eq!(code, app_code, "{what}; the app {app_end}");
            }
            None => {
                refused += 1;
                assert_eq!(code, 125, "{what}");
                assert_eq!(out.stderr_lines().len(), 1, "{what}");
                assert!(out.stderr.starts_with("drainit: error: "), "{what}");
            }
        }
    }
    assert!(refused > 0, "no limit was tight enough to be refused");
    assert!(ran_the_app > 0, "no limit let the app run");
}
