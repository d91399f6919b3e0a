//! The drain-file path: drainit never deletes, follows or blocks on what it
//! did not create. At start it removes only a drain file it wrote itself and
//! refuses (125, one line, nothing touched, the app not started) anything
//! else there; when a drain starts it writes a new file beside the path and
//! moves it in without replacing anything, so a link planted there is never
//! written through and a FIFO never blocks the stop signal or the kill deadline.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod common;
use common::*;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

/// What is at a path, compared before and after drainit ran: the kind, the
/// inode, the mode, the owner, the modification time and, for a regular file
/// or a link, the content or the target.
fn snapshot(path: &Path) -> Option<String> {
    let m = fs::symlink_metadata(path).ok()?;
    let t = m.file_type();
    let detail = if t.is_symlink() {
        fs::read_link(path).unwrap().to_string_lossy().into_owned()
    } else if t.is_file() {
        String::from_utf8_lossy(&fs::read(path).unwrap()).into_owned()
    } else if t.is_dir() {
        let mut names: Vec<String> = fs::read_dir(path)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names.join(",")
    } else {
        String::new()
    };
    Some(format!(
        "{:?} ino={} mode={:o} uid={} mtime={}.{} {detail}",
        t,
        m.ino(),
        m.mode(),
        m.uid(),
        m.mtime(),
        m.mtime_nsec()
    ))
}

/// Names left in `dir` that look like drainit's temporary files.
fn temp_files(dir: &Path) -> Vec<String> {
    fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".drainit-"))
        .collect()
}

fn mkfifo(path: &Path) {
    let ok = Command::new("mkfifo").arg(path).status().unwrap().success();
    assert!(ok, "mkfifo {}", path.display());
}

/// A drain file exactly as drainit writes one.
const OURS: &str = "signal=SIGTERM\ntime=2026-11-22T08:00:00.000Z\nwritten-by=drainit\n";

/// The start-up refusal: 125, one line on stderr naming the path and what is
/// there, the app never started, and the path as it was.
fn assert_refused(mode: Mode, path: &Path, shown_path: &str, what: &str) {
    let dir = Scratch::new("refused-app");
    let started = dir.path("started");
    let before = snapshot(path);
    let out = Drainit::new(mode)
        .arg("--drain-file")
        .arg(path)
        .args(&["sh", "-c", "touch \"$0\"", &dir.str("started")])
        .run(secs(20.0));
    assert_eq!(out.code, Some(125), "{mode:?} {shown_path}: {}", out.stderr);
    assert_eq!(
        out.stderr_lines().len(),
        1,
        "{mode:?}: one line: {:?}",
        out.stderr
    );
    let line = out.stderr_lines()[0];
    assert!(
        line.starts_with(&format!("drainit: error: drain file {shown_path}: {what}")),
        "{mode:?}: {line}"
    );
    assert!(line.contains("nothing was touched"), "{line}");
    assert!(
        !started.exists(),
        "{mode:?} {shown_path}: the app was started"
    );
    assert_eq!(snapshot(path), before, "{mode:?} {shown_path}: touched");
}

#[test]
fn data_at_the_drain_file_path_is_never_deleted() {
    // echo DATA > important.txt; drainit --drain-file important.txt true
    let dir = Scratch::new("data");
    let file = dir.path("important.txt");
    fs::write(&file, "DATA\n").unwrap();
    let out = Drainit::new(Mode::Parent)
        .through(&["env", "-C", &dir.str("")])
        .args(&["--drain-file", "important.txt", "true"])
        .run(secs(20.0));
    assert_eq!(out.code, Some(125), "{}", out.stderr);
    assert_eq!(fs::read_to_string(&file).unwrap(), "DATA\n");
    assert_eq!(
        out.stderr,
        "drainit: error: drain file important.txt: a regular file drainit did not write (5 bytes) is there; \
         drainit removes only a drain file it wrote itself: not starting (nothing was touched)\n"
    );
    for mode in BOTH {
        if can_run(mode) {
            assert_refused(
                mode,
                &file,
                &file.to_string_lossy(),
                "a regular file drainit did not write (5 bytes)",
            );
        }
    }
}

#[test]
fn anything_but_its_own_drain_file_is_refused_at_start_and_left_as_it_is() {
    let dir = Scratch::new("others");
    let p = |name: &str| dir.path(name);
    // Files that are not drainit's, whatever they look like.
    fs::write(p("empty"), "").unwrap();
    fs::write(
        p("old-format"),
        "signal=SIGTERM\ntime=2026-11-22T08:00:00.000Z\n",
    )
    .unwrap();
    fs::write(p("ours-then-more"), format!("{OURS}DATA\n")).unwrap();
    fs::write(p("big"), OURS.repeat(10)).unwrap();
    fs::write(p("unreadable"), "DATA\n").unwrap();
    fs::set_permissions(p("unreadable"), fs::Permissions::from_mode(0o000)).unwrap();
    // Not regular files.
    fs::create_dir(p("dir")).unwrap();
    fs::write(p("dir/inside"), "DATA").unwrap();
    fs::create_dir(p("empty-dir")).unwrap();
    fs::write(p("a-drain-file"), OURS).unwrap();
    std::os::unix::fs::symlink(p("a-drain-file"), p("link-to-a-drain-file")).unwrap();
    std::os::unix::fs::symlink(p("empty"), p("link-to-a-file")).unwrap();
    std::os::unix::fs::symlink("/nonexistent", p("dangling-link")).unwrap();
    mkfifo(&p("fifo"));
    let _socket = std::os::unix::net::UnixListener::bind(p("socket")).unwrap();
    let cases: Vec<(std::path::PathBuf, String)> = vec![
        (
            p("empty"),
            "a regular file drainit did not write (0 bytes)".into(),
        ),
        (
            p("old-format"),
            "a regular file drainit did not write (45 bytes)".into(),
        ),
        (
            p("ours-then-more"),
            "a regular file drainit did not write".into(),
        ),
        (
            p("big"),
            format!(
                "a regular file of {} bytes, larger than any drain file drainit writes",
                OURS.len() * 10
            ),
        ),
        (p("dir"), "a directory".into()),
        (p("empty-dir"), "a directory".into()),
        (
            p("link-to-a-drain-file"),
            format!("a symbolic link to {}", p("a-drain-file").display()),
        ),
        (
            p("link-to-a-file"),
            format!("a symbolic link to {}", p("empty").display()),
        ),
        (p("dangling-link"), "a symbolic link to /nonexistent".into()),
        (p("fifo"), "a FIFO".into()),
        (p("socket"), "a socket".into()),
        ("/dev/null".into(), "a character device".into()),
        (
            "/dev/stdout".into(),
            "a symbolic link to /proc/self/fd/1".into(),
        ),
    ];
    let mut cases = cases;
    if sys_uid() == 0 {
        // drainit's content, but not drainit's user.
        fs::write(p("someone-elses"), OURS).unwrap();
        std::os::unix::fs::chown(p("someone-elses"), Some(65534), Some(65534)).unwrap();
        cases.push((
            p("someone-elses"),
            "a regular file owned by uid 65534 (drainit runs as uid 0)".into(),
        ));
        // Root reads a 0000 file: it is simply not drainit's.
        cases.push((
            p("unreadable"),
            "a regular file drainit did not write (5 bytes)".into(),
        ));
    }
    let dev_stdout = snapshot(Path::new("/dev/stdout"));
    for (path, what) in &cases {
        assert_refused(Mode::Parent, path, &path.to_string_lossy(), what);
    }
    if can_run(Mode::Pid1) {
        for name in ["dir", "link-to-a-drain-file", "fifo"] {
            let (path, what) = cases.iter().find(|(c, _)| c == &p(name)).unwrap();
            assert_refused(Mode::Pid1, path, &path.to_string_lossy(), what);
        }
    }
    assert_eq!(snapshot(Path::new("/dev/stdout")), dev_stdout);
    assert!(p("a-drain-file").exists());
}

fn sys_uid() -> u32 {
    fs::metadata("/proc/self").unwrap().uid()
}

#[test]
fn the_refusal_shows_the_path_escaped_on_one_line() {
    let dir = Scratch::new("escaped");
    let path = dir.path("bad\nname\x1b[31m");
    fs::create_dir(&path).unwrap();
    let shown = path
        .to_string_lossy()
        .replace('\n', "\\n")
        .replace('\x1b', "\\u{1b}");
    assert!(shown.ends_with("/bad\\nname\\u{1b}[31m"), "{shown}");
    assert_refused(Mode::Parent, &path, &shown, "a directory");
}

#[test]
fn its_own_drain_file_from_an_earlier_run_is_removed_at_start() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("restart");
    let file = dir.path("draining");
    // A first run drains, as before a restart: its drain file stays behind.
    // With umask 077 the drain file is still 0644, for health checks run as
    // another user.
    let mut r = Drainit::new(Mode::Pid1)
        .through(&["sh", "-c", "umask 077; exec \"$@\"", "sh"])
        .args(&["--drain-file", &dir.str("draining"), "--drain-delay", "0"])
        .app(&["--ready", &dir.str("ready")])
        .spawn();
    r.ready(&dir.path("ready"));
    r.signal(SIGTERM);
    let out = r.wait(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let content = fs::read_to_string(&file).unwrap();
    let lines: Vec<&str> = content.lines().collect();
    assert_eq!(lines.len(), 3, "{content}");
    assert_eq!(lines[0], "signal=SIGTERM");
    assert!(lines[1].starts_with("time=20"), "{content}");
    assert_eq!(lines[2], "written-by=drainit");
    let mode = fs::symlink_metadata(&file).unwrap().mode();
    assert_eq!(mode & 0o7777, 0o644, "mode {mode:o}");
    assert_eq!(temp_files(&dir.path("")), Vec::<String>::new());
    // The restart: drainit knows its own file and removes it before the app runs.
    for mode in BOTH {
        if mode == Mode::Parent {
            fs::write(&file, &content).unwrap();
        }
        let out = Drainit::new(mode)
            .args(&["--drain-file", &dir.str("draining")])
            .args(&["sh", "-c", "test ! -e \"$0\"", &dir.str("draining")])
            .run(secs(20.0));
        assert_eq!(
            out.code,
            Some(0),
            "{mode:?}: the app saw the file: {}",
            out.stderr
        );
        assert!(
            out.stderr.contains(&format!(
                "drainit: removed stale drain file {} (written by drainit on an earlier run)",
                file.display()
            )),
            "{mode:?}: {}",
            out.stderr
        );
        assert!(!file.exists());
    }
}

/// A read-only root file system (or directory) cannot take the drain file:
/// refused at start, naming the option and why, not found out at the first
/// drain with the health check still green.
#[test]
fn a_drain_file_on_a_read_only_file_system_is_refused_at_start() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("readonly");
    let ro = dir.path("ro");
    fs::create_dir(&ro).unwrap();
    // As on a container with a read-only root file system: drainit's mount
    // namespace (unshare --mount-proc gives it one) sees the directory read-only.
    let script =
        "mount --bind \"$0\" \"$0\" && mount -o remount,ro,bind \"$0\" \"$0\" && exec \"$@\"";
    let out = Drainit::new(Mode::Pid1)
        .through(&["sh", "-c", script, &ro.to_string_lossy()])
        .args(&["--drain-file", &format!("{}/draining", ro.display())])
        .args(&["touch", &dir.str("started")])
        .run(secs(20.0));
    out.assert_error(
        125,
        &format!(
            "drainit: error: --drain-file: cannot create {0}/draining: directory {0}: read-only file system (drainit runs as uid 0): the drain could not write it; not starting",
            ro.display()
        ),
        "read-only",
    );
    assert!(!dir.path("started").exists(), "the app was started");
}

/// A PID-1 drainit with the fixture app and `--drain-file DIR/draining`.
fn start(dir: &Scratch, options: &[&str], app_args: &[&str]) -> Running {
    let mut args = vec!["--ready".to_string(), dir.str("ready")];
    args.extend(["--log".to_string(), dir.str("log")]);
    args.extend(app_args.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut r = Drainit::new(Mode::Pid1)
        .args(&["--drain-file", &dir.str("draining")])
        .args(options)
        .app(&args)
        .spawn();
    r.ready(&dir.path("ready"));
    r
}

#[test]
fn a_link_planted_after_start_is_never_written_through() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("planted-link");
    let secret = dir.path("secret");
    fs::write(&secret, "root-only secret\n").unwrap();
    fs::set_permissions(&secret, fs::Permissions::from_mode(0o600)).unwrap();
    let mut r = start(&dir, &["--drain-delay", "300ms"], &[]);
    // After start, as an app running as another user could in a shared directory.
    let link = dir.path("draining");
    std::os::unix::fs::symlink(&secret, &link).unwrap();
    let before = (snapshot(&secret), snapshot(&link));
    let sent = r.elapsed();
    r.signal(SIGTERM);
    wait_for_line(&dir.path("log"), "SIGTERM", secs(10.0));
    let took = r.elapsed() - sent;
    let out = r.wait(secs(10.0));
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert!(took >= secs(0.3), "the drain delay was cut: {took:?}");
    assert_eq!((snapshot(&secret), snapshot(&link)), before);
    assert_eq!(fs::read_to_string(&secret).unwrap(), "root-only secret\n");
    assert_eq!(
        fs::symlink_metadata(&secret).unwrap().mode() & 0o7777,
        0o600
    );
    assert!(
        out.stderr.contains(&format!(
            "drainit: warning: cannot write drain file {}: a symbolic link to {} is there already; left as it is; draining anyway",
            link.display(),
            secret.display()
        )),
        "{}",
        out.stderr
    );
    assert_eq!(temp_files(&dir.path("")), Vec::<String>::new());
}

#[test]
fn anything_planted_after_start_is_left_as_it_is_and_the_drain_goes_on() {
    if !can_run(Mode::Pid1) {
        return;
    }
    type Plant = fn(&Path);
    let plants: [(&str, Plant, &str); 3] = [
        (
            "file",
            |p| fs::write(p, "DATA\n").unwrap(),
            "a regular file drainit did not write (5 bytes)",
        ),
        ("directory", |p| fs::create_dir(p).unwrap(), "a directory"),
        (
            "drain file",
            |p| fs::write(p, OURS).unwrap(),
            "a drain file drainit wrote",
        ),
    ];
    for (name, plant, what) in plants {
        let dir = Scratch::new("planted");
        let mut r = start(&dir, &[], &[]);
        let path = dir.path("draining");
        plant(&path);
        let before = snapshot(&path);
        r.signal(SIGTERM);
        let out = r.wait(secs(10.0));
        assert_eq!(out.code, Some(0), "{name}: {}", out.stderr);
        assert_eq!(snapshot(&path), before, "{name}: touched");
        assert!(
            out.stderr.contains(&format!(
                "drainit: warning: cannot write drain file {}: {what} is there already; left as it is; draining anyway",
                path.display()
            )),
            "{name}: {}",
            out.stderr
        );
        assert_eq!(log_lines(&dir.path("log")), ["SIGTERM"], "{name}");
        assert_eq!(temp_files(&dir.path("")), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn a_fifo_at_the_drain_file_path_blocks_neither_the_stop_signal_nor_the_kill_deadline() {
    if !can_run(Mode::Pid1) {
        return;
    }
    let dir = Scratch::new("fifo");
    // The app ignores SIGTERM: only the kill deadline ends it.
    let mut r = start(&dir, &["--kill-after", "2s"], &["--on-term", "ignore"]);
    let fifo = dir.path("draining");
    mkfifo(&fifo);
    let sent = r.elapsed();
    r.signal(SIGTERM);
    wait_for_line(&dir.path("log"), "SIGTERM", secs(10.0));
    let stop_after = r.elapsed() - sent;
    let out = r.wait(secs(10.0));
    let killed_after = out.elapsed - sent;
    assert_eq!(out.code, Some(137), "{}", out.stderr);
    assert!(
        stop_after < secs(1.8),
        "the stop signal came late: {stop_after:?}"
    );
    assert!(
        killed_after >= secs(2.0) && killed_after < secs(6.0),
        "the kill deadline did not hold: {killed_after:?}"
    );
    assert!(
        fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(),
        "the FIFO is left in place"
    );
    assert!(
        out.stderr
            .contains("a FIFO is there already; left as it is"),
        "{}",
        out.stderr
    );
    assert_eq!(temp_files(&dir.path("")), Vec::<String>::new());
}
