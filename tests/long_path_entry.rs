//! A `PATH` entry longer than the kernel takes (4096 bytes) is skipped, as
//! execvp skips it (tini, dumb-init and catatonit run the command): the
//! search goes on to the next entry instead of ending in an error of
//! drainit's own (125).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;

fn run_with_path(mode: Mode, path: &str, command: &[&str]) -> Outcome {
    // Set by `env` right before drainit: nothing else searches this PATH.
    Drainit::new(mode)
        .through(&["env", &format!("PATH={path}")])
        .arg("--")
        .args(command)
        .run(secs(20.0))
}

#[test]
fn a_path_entry_too_long_for_the_kernel_is_skipped() {
    let huge = "a".repeat(5000);
    // Fits PATH_MAX alone, but not joined with "/sh".
    let nearly = format!("/{}", "b".repeat(4093));
    // Each component within NAME_MAX, the whole over PATH_MAX.
    let deep = "/c".repeat(2100);
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        for first in [&huge, &nearly, &deep] {
            let path = format!("{first}:/usr/bin:/bin");
            let out = run_with_path(mode, &path, &["sh", "-c", "exit 7"]);
            assert_eq!(
                out.code,
                Some(7),
                "{mode:?}, PATH starting with {} bytes: {}",
                first.len(),
                out.stderr
            );
        }
        // Also between other entries, and as the last one.
        let path = format!("/nonexistent:{huge}:/usr/bin:/bin:{huge}");
        let out = run_with_path(mode, &path, &["sh", "-c", "exit 7"]);
        assert_eq!(out.code, Some(7), "{mode:?}: {}", out.stderr);
        // A command in none of them is "not found" (127), not drainit's own error.
        let out = run_with_path(
            mode,
            &format!("{huge}:/usr/bin:/bin"),
            &["no-such-command-x"],
        );
        assert_eq!(out.code, Some(127), "{mode:?}: {}", out.stderr);
        assert!(out.stderr.contains("not found"), "{mode:?}: {}", out.stderr);
    }
}

#[test]
fn a_component_longer_than_a_file_name_can_be_is_skipped() {
    // 300 bytes: the kernel says ENAMETOOLONG for the component, not for the
    // whole path; the search goes on all the same.
    let long_name = format!("/tmp/{}", "d".repeat(300));
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let out = run_with_path(
            mode,
            &format!("{long_name}:/usr/bin:/bin"),
            &["sh", "-c", "exit 9"],
        );
        assert_eq!(out.code, Some(9), "{mode:?}: {}", out.stderr);
    }
}
