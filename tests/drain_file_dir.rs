//! The drain file's directory is pinned at start: drainit opens it once and
//! creates, moves and removes names only in that directory. A directory
//! swapped for a link after start (by an app that can write its parent)
//! never sends the drain file, or drainit's temporary file, to the link's
//! target; the file lands in the directory drainit started with, wherever it
//! was moved, or drainit says cleanly that it could not write it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

/// Every name in `dir` (none if it is gone).
fn names(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// drainit with `--drain-file drain_file`, the fixture app ready.
fn start(mode: Mode, scratch: &Scratch, drain_file: &Path) -> Running {
    let mut r = Drainit::new(mode)
        .arg("--drain-file")
        .arg(drain_file)
        .app(&["--ready", &scratch.str("ready")])
        .spawn();
    r.ready(&scratch.path("ready"));
    r
}

fn is_drainit_file(path: &Path) -> bool {
    fs::read_to_string(path).is_ok_and(|c| c.starts_with("signal=SIGTERM\n"))
}

#[test]
fn a_directory_swapped_for_a_link_after_start_gets_nothing_through_it() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let s = Scratch::new("pinned-dir");
        let (dir, moved, elsewhere) = (s.path("dir"), s.path("dir.old"), s.path("elsewhere"));
        fs::create_dir(&dir).unwrap();
        fs::create_dir(&elsewhere).unwrap();
        let r = start(mode, &s, &dir.join("drain"));
        // The app (say) moves the directory away and puts a link in its place.
        fs::rename(&dir, &moved).unwrap();
        symlink(&elsewhere, &dir).unwrap();
        let mut r = r;
        r.signal(SIGTERM);
        let out = r.wait(secs(20.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        assert_eq!(
            names(&elsewhere),
            Vec::<String>::new(),
            "{mode:?}: written through the link; stderr: {}",
            out.stderr
        );
        // In the directory drainit started with, under its new name.
        assert_eq!(names(&moved), ["drain"], "{mode:?}: {}", out.stderr);
        assert!(is_drainit_file(&moved.join("drain")), "{mode:?}");
        assert!(
            out.stderr.contains(&format!(
                "drain file {} written",
                dir.join("drain").display()
            )),
            "{mode:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_directory_removed_and_replaced_by_a_link_is_reported_and_nothing_is_written() {
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let s = Scratch::new("removed-dir");
        let (dir, elsewhere) = (s.path("dir"), s.path("elsewhere"));
        fs::create_dir(&dir).unwrap();
        fs::create_dir(&elsewhere).unwrap();
        let mut r = start(mode, &s, &dir.join("drain"));
        fs::remove_dir(&dir).unwrap();
        symlink(&elsewhere, &dir).unwrap();
        r.signal(SIGTERM);
        let out = r.wait(secs(20.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        assert_eq!(
            names(&elsewhere),
            Vec::<String>::new(),
            "{mode:?}: written through the link; stderr: {}",
            out.stderr
        );
        let warning = format!(
            "drainit: warning: cannot write drain file {}: ",
            dir.join("drain").display()
        );
        assert!(
            out.stderr.lines().any(|l| l.starts_with(&warning)
                && l.to_lowercase().contains("no such file or directory")
                && l.ends_with("; draining anyway")),
            "{mode:?}: {}",
            out.stderr
        );
    }
}

#[test]
fn a_link_in_the_path_at_start_is_taken_once_and_not_followed_again() {
    // `/var/run/app/drain` with /var/run a link to /run: the link is followed
    // at start, and where it led then is the directory from then on.
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let s = Scratch::new("link-at-start");
        let (real, other, link) = (s.path("real"), s.path("other"), s.path("link"));
        fs::create_dir(&real).unwrap();
        fs::create_dir(&other).unwrap();
        symlink(&real, &link).unwrap();
        let mut r = start(mode, &s, &link.join("drain"));
        // Repointed after start.
        fs::remove_file(&link).unwrap();
        symlink(&other, &link).unwrap();
        r.signal(SIGTERM);
        let out = r.wait(secs(20.0));
        assert_eq!(out.code, Some(0), "{mode:?}: {}", out.stderr);
        assert_eq!(names(&other), Vec::<String>::new(), "{mode:?}");
        assert_eq!(names(&real), ["drain"], "{mode:?}: {}", out.stderr);
        assert!(is_drainit_file(&real.join("drain")), "{mode:?}");
    }
}

#[test]
fn a_directory_missing_at_start_is_refused_before_the_app_starts() {
    // A directory that would appear after start may be anyone's link: drainit
    // refuses at start (125), so no drain file can ever go there.
    for mode in BOTH {
        if !can_run(mode) {
            continue;
        }
        let s = Scratch::new("missing-dir");
        let dir = s.path("dir");
        let out = Drainit::new(mode)
            .arg("--drain-file")
            .arg(dir.join("drain"))
            .app(&["--ready", &s.str("ready")])
            .run(secs(20.0));
        assert_eq!(out.code, Some(125), "{mode:?}: {}", out.stderr);
        assert!(
            out.stderr.contains("--drain-file") && out.stderr.contains(&dir.display().to_string()),
            "{mode:?}: {}",
            out.stderr
        );
        assert!(!s.path("ready").exists(), "{mode:?}: the app ran");
        assert_eq!(
            names(s.path("").as_path()),
            Vec::<String>::new(),
            "{mode:?}"
        );
    }
}
