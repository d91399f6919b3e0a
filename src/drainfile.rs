//! Everything drainit does at the drain-file path, which is attack surface
//! when drainit runs as root and the directory is writable by the app:
//!
//! - at start, it removes only a drain file it wrote itself (a regular file,
//!   owned by drainit's user, small, with exactly the content below); anything
//!   else there is refused, untouched;
//! - its directory is opened once, at start, and every name there is looked
//!   up in that directory (`openat`, `renameat2`, `unlinkat` on its
//!   descriptor): a directory swapped for a link later changes nothing;
//! - when a drain starts, it never follows a link and never opens an existing
//!   path: it writes a new file beside the target and moves it into place
//!   without replacing anything (`renameat2(RENAME_NOREPLACE)`, or `link`);
//!   whatever appeared at the path meanwhile is left as it is;
//! - nothing it opens there can block (`O_NONBLOCK`, and only regular files).
//!
//! The health check reads the same path (see `health.rs`).

use std::ffi::OsStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use log::info;

use crate::error::Error;
use crate::signals::Signal;
use crate::sys;
use crate::text;
use crate::time::rfc3339;

/// No drain file drainit writes is larger; nothing larger is ever taken for one.
pub const MAX_BYTES: u64 = 256;

/// The last line of every drain file drainit writes.
const MARK: &str = "written-by=drainit";

/// What drainit writes: `signal=SIGTERM`, `time=2026-11-22T08:00:00.000Z`,
/// `written-by=drainit`, one per line.
pub fn content(signal: Signal, at: SystemTime) -> String {
    format!("signal={signal}\ntime={}\n{MARK}\n", rfc3339(at))
}

/// Whether `bytes` is exactly what [`content`] writes, for some signal and time.
pub fn is_drainit_content(bytes: &[u8]) -> bool {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return false;
    };
    let Some(body) = text.strip_suffix('\n') else {
        return false;
    };
    let mut lines = body.split('\n');
    let signal = lines.next().and_then(|l| l.strip_prefix("signal=SIG"));
    let time = lines.next().and_then(|l| l.strip_prefix("time="));
    let mark = lines.next();
    lines.next().is_none()
        && mark == Some(MARK)
        && signal.is_some_and(|s| {
            (1..=10).contains(&s.len())
                && s.bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'+' || b == b'-')
        })
        && time.is_some_and(is_rfc3339_millis)
}

/// `2026-11-22T08:00:00.000Z`, as `time::rfc3339` writes it.
fn is_rfc3339_millis(t: &str) -> bool {
    const SHAPE: &[u8] = b"dddd-dd-ddTdd:dd:dd.dddZ";
    t.len() == SHAPE.len()
        && t.bytes().zip(SHAPE.iter()).all(|(b, s)| match s {
            b'd' => b.is_ascii_digit(),
            s => b == *s,
        })
}

/// What is at the drain-file path, looked at without following a link and
/// without opening anything but a regular file (non-blocking).
#[derive(Debug)]
pub enum Found {
    Absent,
    /// A drain file drainit wrote: it may be removed.
    Ours(Metadata),
    /// Anything else, described for a log line ("a directory", ...).
    Other(String),
    /// The path could not be looked at (a directory drainit may not enter, ...).
    Unknown(io::Error),
}

/// The drain file's directory, opened once at start and pinned: every name
/// drainit looks at, creates, moves or removes there is looked up in that
/// directory (`*at` calls on its descriptor), so a directory swapped for a
/// link (or moved away) after start never sends a drain file elsewhere. The
/// path is followed once, at start, as given: a link in it then (`/var/run`
/// to `/run`) is taken, and what it led to is the directory from then on.
#[derive(Debug)]
pub struct DrainFile {
    /// As given, for log lines.
    path: PathBuf,
    /// The file's name in `dir`.
    name: Vec<u8>,
    /// The directory, or why it could not be opened at start (then no drain
    /// file is ever written: a directory that appears later is not trusted).
    dir: Result<OwnedFd, String>,
}

impl DrainFile {
    /// At start: pins the directory, then removes a drain file drainit wrote
    /// on an earlier run; refuses (exit 125, nothing touched) when anything
    /// else is there. An absent file says nothing; a path that cannot be
    /// looked at is only a warning, since nothing there is touched either.
    pub fn open(path: &Path) -> Result<DrainFile, Error> {
        let shown = text::path(path);
        let name = match path.file_name() {
            Some(name) => name.as_bytes().to_vec(),
            None => {
                return Err(Error::Usage(format!(
                    "drain file {shown}: not a path to a file"
                )));
            }
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let dir = sys::open_dir(dir).map_err(|e| {
            let why = format!(
                "its directory {} could not be opened at start ({})",
                text::path(dir),
                reason(&e)
            );
            log::warn!("drain file {shown}: {why}; no drain file will be written");
            why
        });
        let file = DrainFile {
            path: path.to_path_buf(),
            name,
            dir,
        };
        file.clear_stale()?;
        Ok(file)
    }

    fn clear_stale(&self) -> Result<(), Error> {
        let shown = text::path(&self.path);
        let Ok(dir) = &self.dir else {
            return Ok(());
        };
        match inspect_at(dir, &self.name) {
            Found::Absent => Ok(()),
            Found::Unknown(e) => {
                log::warn!(
                    "cannot check drain file {shown}: {}; left as it is",
                    reason(&e)
                );
                Ok(())
            }
            Found::Other(what) => Err(Error::Usage(format!(
                "drain file {shown}: {what} is there; drainit removes only a drain file it wrote itself: not starting (nothing was touched)"
            ))),
            Found::Ours(meta) => {
                // Narrow the window in which the file could be swapped: look again
                // right before removing it.
                let unchanged = metadata_at(dir, &self.name)
                    .is_ok_and(|now| now.dev() == meta.dev() && now.ino() == meta.ino());
                if !unchanged {
                    return Err(Error::Usage(format!(
                        "drain file {shown}: changed while drainit looked at it: not starting (nothing was touched)"
                    )));
                }
                match sys::unlink_at(dir, &self.name) {
                    Ok(()) => {
                        info!(
                            "removed stale drain file {shown} (written by drainit on an earlier run)"
                        );
                        Ok(())
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(Error::Usage(format!(
                        "drain file {shown}: cannot remove the stale drain file drainit wrote on an earlier run ({}): not starting, or health checks would report a drain at once",
                        reason(&e)
                    ))),
                }
            }
        }
    }

    /// When a drain starts: writes a new drain file beside the target, in the
    /// directory pinned at start, and moves it into place without replacing
    /// anything. Whatever is there already is left as it is (the error says
    /// what it is); the temporary file never stays.
    pub fn write(&self, signal: Signal) -> io::Result<()> {
        let dir = self
            .dir
            .as_ref()
            .map_err(|why| io::Error::other(why.clone()))?;
        let (tmp, file) = create_temp(dir).map_err(|e| io::Error::other(reason(&e)))?;
        let placed = fill(file, signal).and_then(|()| place(dir, &tmp, &self.name));
        if !matches!(placed, Ok(Placed::Renamed)) {
            // Never left behind (after a rename, nothing of drainit's is there).
            let _ = sys::unlink_at(dir, &tmp);
        }
        match placed.map(|_| ()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                let what = match inspect_at(dir, &self.name) {
                    Found::Ours(_) => "a drain file drainit wrote".to_string(),
                    Found::Other(what) => what,
                    Found::Absent => "something that has gone since".to_string(),
                    Found::Unknown(e) => {
                        format!("something drainit cannot look at ({})", reason(&e))
                    }
                };
                Err(io::Error::other(format!(
                    "{what} is there already; left as it is"
                )))
            }
            Err(e) => Err(io::Error::other(reason(&e))),
        }
    }
}

/// The metadata of `name` in `dir`, a link itself rather than what it points to.
fn metadata_at(dir: &OwnedFd, name: &[u8]) -> io::Result<Metadata> {
    File::from(sys::open_at(dir, name, libc::O_PATH, 0)?).metadata()
}

/// Looks at what is `name` in `dir`; see [`Found`].
fn inspect_at(dir: &OwnedFd, name: &[u8]) -> Found {
    let meta = match metadata_at(dir, name) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Found::Absent,
        Err(e) => return Found::Unknown(e),
    };
    if !meta.file_type().is_file() {
        let what = if meta.file_type().is_symlink() {
            match sys::readlink_at(dir, name) {
                Ok(to) => format!(
                    "a symbolic link to {}",
                    text::path(Path::new(OsStr::from_bytes(&to)))
                ),
                Err(_) => "a symbolic link".to_string(),
            }
        } else {
            kind(&meta).to_string()
        };
        return Found::Other(what);
    }
    if meta.uid() != sys::euid() {
        return Found::Other(format!(
            "a regular file owned by uid {} (drainit runs as uid {})",
            meta.uid(),
            sys::euid()
        ));
    }
    if meta.len() > MAX_BYTES {
        return Found::Other(format!(
            "a regular file of {} bytes, larger than any drain file drainit writes",
            meta.len()
        ));
    }
    let read = sys::open_at(
        dir,
        name,
        libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    )
    .map(File::from)
    .and_then(read_file);
    let (file, bytes) = match read {
        Ok(read) => read,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Found::Absent,
        Err(e) => {
            return Found::Other(format!(
                "a regular file drainit cannot read ({})",
                reason(&e)
            ));
        }
    };
    let same = file
        .metadata()
        .is_ok_and(|now| now.is_file() && now.dev() == meta.dev() && now.ino() == meta.ino());
    if !same {
        return Found::Other("a file that changed while drainit looked at it".to_string());
    }
    if !is_drainit_content(&bytes) {
        return Found::Other(format!(
            "a regular file drainit did not write ({} bytes)",
            meta.len()
        ));
    }
    Found::Ours(meta)
}

/// Opens a regular file without following a link or blocking, and reads at
/// most `MAX_BYTES + 1` bytes of it.
pub fn read_bounded(path: &Path) -> io::Result<(File, Vec<u8>)> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?;
    read_file(file)
}

/// At most `MAX_BYTES + 1` bytes of `file`, if it is a regular file.
fn read_file(file: File) -> io::Result<(File, Vec<u8>)> {
    if !file.metadata()?.is_file() {
        return Err(io::Error::other("not a regular file"));
    }
    let mut bytes = Vec::new();
    (&file)
        .take(MAX_BYTES.saturating_add(1))
        .read_to_end(&mut bytes)?;
    Ok((file, bytes))
}

/// "a directory", "a FIFO", "a symbolic link to /etc/shadow", ...
pub fn describe_non_file(path: &Path, meta: &Metadata) -> String {
    if meta.file_type().is_symlink() {
        return match fs::read_link(path) {
            Ok(to) => format!("a symbolic link to {}", text::path(&to)),
            Err(_) => "a symbolic link".to_string(),
        };
    }
    kind(meta).to_string()
}

/// "a directory", "a FIFO", "a symbolic link", ...
fn kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_file() {
        "a regular file"
    } else {
        "something that is not a regular file"
    }
}

/// A new file in `dir` with a name nobody has: `O_CREAT|O_EXCL|O_NOFOLLOW`.
fn create_temp(dir: &OwnedFd) -> io::Result<(Vec<u8>, File)> {
    let mut last = io::Error::from(io::ErrorKind::AlreadyExists);
    for n in 0..16u32 {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tmp = format!(".drainit-{}-{nanos:x}-{n}.tmp", std::process::id()).into_bytes();
        match sys::open_at(
            dir,
            &tmp,
            libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NONBLOCK | libc::O_NOCTTY,
            0o644,
        ) {
            Ok(fd) => return Ok((tmp, File::from(fd))),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

fn fill(mut file: File, signal: Signal) -> io::Result<()> {
    // 0644 whatever the umask: health checks may run as another user.
    file.set_permissions(fs::Permissions::from_mode(0o644))?;
    file.write_all(content(signal, SystemTime::now()).as_bytes())
}

enum Placed {
    Renamed,
    /// Linked: the temporary name is still there.
    Linked,
}

/// Moves `tmp` to `name` in `dir` unless something is there (`AlreadyExists`).
fn place(dir: &OwnedFd, tmp: &[u8], name: &[u8]) -> io::Result<Placed> {
    match sys::rename_noreplace_at(dir, tmp, name) {
        Ok(()) => Ok(Placed::Renamed),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS)) => {
            // A file system without RENAME_NOREPLACE: link(2) never replaces either.
            sys::link_at(dir, tmp, name).map(|()| Placed::Linked)
        }
        Err(e) => Err(e),
    }
}

/// `Permission denied (os error 13)` → `permission denied`.
pub fn reason(e: &io::Error) -> String {
    crate::error::os_reason(e).to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn drainit_recognises_only_its_own_content() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_795_000_000_123);
        for n in [1, 15, 34, 36, 64] {
            let c = content(Signal::new(n).unwrap(), at);
            assert!(is_drainit_content(c.as_bytes()), "{c}");
            assert!((c.len() as u64) <= MAX_BYTES);
        }
        let ours = content(Signal::TERM, at);
        assert_eq!(
            ours,
            "signal=SIGTERM\ntime=2026-11-18T11:06:40.123Z\nwritten-by=drainit\n"
        );
        for bad in [
            "",
            "DATA\n",
            "stale",
            "signal=SIGTERM\ntime=2026-11-18T11:06:40.123Z\n",
            "signal=SIGTERM\ntime=2026-11-18T11:06:40.123Z\nwritten-by=drainit",
            "signal=SIGTERM\ntime=2026-11-18T11:06:40.123Z\nwritten-by=drainit\n\n",
            "signal=SIGTERM\ntime=2026-11-18T11:06:40.123Z\nwritten-by=drainit\nmore\n",
            "signal=SIGTERM\ntime=2026-11-18 07:46:40.123Z\nwritten-by=drainit\n",
            "signal=TERM\ntime=2026-11-18T11:06:40.123Z\nwritten-by=drainit\n",
            "signal=SIGterm\ntime=2026-11-18T11:06:40.123Z\nwritten-by=drainit\n",
            "time=2026-11-18T11:06:40.123Z\nsignal=SIGTERM\nwritten-by=drainit\n",
        ] {
            assert!(!is_drainit_content(bad.as_bytes()), "{bad:?}");
        }
        assert!(!is_drainit_content(b"signal=SIGTERM\xff\n"));
    }
}
