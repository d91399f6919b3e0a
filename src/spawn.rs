//! Starting the app: its own process group (unless `--no-group`), the
//! terminal's foreground when drainit holds it, exactly the signal state
//! drainit was started with, and none of drainit's descriptors (all of them
//! are close-on-exec). The command is found and run as POSIX `execvp` does,
//! a script without `#!` included; when it cannot be, the error names what
//! is missing. Then, while it runs, job control: what to do when the app is
//! stopped from the terminal.

use std::ffi::OsString;
use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use log::{debug, info, warn};

use crate::cli::Launch;
use crate::error::Error;
use crate::signals::{SigSet, Signal};
use crate::sys::{self, ChildSetup, Program, StartError, Target};
use crate::text::Escaped;

/// The running app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct App {
    pub pid: i32,
    /// Whether the app leads a process group of its own (its pgid is its pid).
    pub own_group: bool,
    /// Whether its group was given the terminal's foreground at start.
    terminal: bool,
    /// drainit forwarded a terminal stop signal (TSTP, TTIN, TTOU) that a
    /// process sent, and no SIGCONT since: a stop that follows was asked for.
    stop_forwarded: bool,
}

pub fn spawn(launch: &Launch, inherited: sys::Inherited) -> Result<App, Error> {
    let failed = |source: io::Error, missing: Option<Interpreter>| Error::Spawn {
        command: launch.command.first().cloned().unwrap_or_default(),
        source,
        missing,
    };
    let mut program = Program::new(&launch.command).map_err(|e| failed(e, None))?;
    let terminal = launch.group && sys::holds_terminal_foreground();
    let setup = ChildSetup {
        own_group: launch.group,
        terminal,
        inherited,
    };
    // `start` returns only once the child has exec'd (or failed to), so its
    // process group exists before the first signal can be forwarded to it.
    match sys::start(&mut program, setup) {
        Ok(pid) => Ok(App {
            pid,
            own_group: launch.group,
            terminal,
            stop_forwarded: false,
        }),
        Err(StartError::Exec(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
            let missing = launch.command.first().and_then(missing_interpreter);
            Err(failed(e, missing))
        }
        Err(StartError::Shell(e)) if e.raw_os_error() == Some(libc::ENOENT) => {
            let missing = Interpreter {
                path: Some(b"/bin/sh".to_vec()),
                named_by: NamedBy::NoShebang,
                file: launch.command.first().cloned().unwrap_or_default(),
            };
            Err(failed(e, Some(missing)))
        }
        // /bin/sh is there but could not run it: the file's own error stands.
        Err(StartError::Shell(_)) => Err(failed(io::Error::from_raw_os_error(libc::ENOEXEC), None)),
        Err(
            StartError::Clone(e)
            | StartError::Group(e)
            | StartError::Stdio(e)
            | StartError::Exec(e),
        ) => Err(failed(e, None)),
    }
}

impl App {
    /// Job control, once per wake of the supervisor, after reaping and before
    /// the received job-control signals are forwarded; `stopped`: the app
    /// was stopped by that signal (the reaping saw it).
    ///
    /// When the app is stopped by a terminal stop signal (Ctrl-Z: SIGTSTP;
    /// SIGTTIN, SIGTTOU) and drainit is the foreground job of a job-control
    /// shell (see `foreground_job`), drainit stops too, so that the shell sees
    /// the job stop and takes its terminal back; on `fg` it continues drainit,
    /// which gives the terminal back to the app's group before forwarding the
    /// SIGCONT. When nothing above drainit does job control (PID 1 under
    /// `docker run -it`; a parent that put drainit in a group of its own
    /// without a terminal), nobody could ever continue the app: drainit does
    /// at once and warns, unless the stop came through drainit from a process
    /// (`docker kill -s TSTP`), which was asked for. A SIGSTOP is never undone.
    pub fn job_control(&mut self, received: &sys::Batch, stopped: Option<Signal>) {
        if stopped.is_none() && !received.signals().intersects(SigSet::JOB_CONTROL) {
            return;
        }
        for r in received.as_slice() {
            match r.signal {
                // Sent by someone (`docker kill -s TSTP`), not by the terminal.
                libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU if !r.from_kernel => {
                    self.stop_forwarded = true
                }
                libc::SIGCONT => {
                    self.stop_forwarded = false;
                    // `fg` gave drainit's group the terminal: the app's group had it.
                    if self.terminal
                        && sys::holds_terminal_foreground()
                        && let Err(e) = sys::give_terminal(self.pid)
                    {
                        debug!(
                            "cannot give the terminal back to the app's group: {}",
                            crate::error::Reason(&e)
                        );
                    }
                }
                _ => {}
            }
        }
        let Some(signal) = stopped else {
            return;
        };
        if !matches!(
            signal.number(),
            libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
        ) {
            debug!("the app was stopped by {signal}; it stays stopped until it gets SIGCONT");
            return;
        }
        if self.foreground_job() {
            info!(
                "the app was stopped by {signal}; stopping drainit too, so that the shell can continue both"
            );
            sys::stop_self();
        } else if self.stop_forwarded {
            debug!(
                "the app was stopped by {signal}, which drainit forwarded; it stays stopped until SIGCONT"
            );
        } else {
            let target = if self.own_group {
                Target::Group(self.pid)
            } else {
                Target::Pid(self.pid)
            };
            warn!(
                target: crate::output::STORM,
                "the app was stopped by {signal} (Ctrl-Z?) and nothing above drainit does job control: continuing it"
            );
            if let Err(e) = sys::send(target, libc::SIGCONT) {
                warn!(
                    target: crate::output::STORM,
                    "cannot send SIGCONT to the app: {}",
                    crate::error::Reason(&e)
                );
            }
        }
    }

    /// Whether drainit is the foreground job of a job-control shell, which
    /// sees drainit stop and can continue it: drainit is a job (see
    /// `sys::is_shell_job`) and its terminal's foreground is drainit's group
    /// or the app's (the shell gave it to the job). A parent that only starts
    /// drainit in a group of its own (Go's `Setpgid`, supervisord, Python's
    /// `process_group=0`) gives it no terminal, or not its foreground: a
    /// drainit stopped there would wait for a SIGCONT that never comes.
    fn foreground_job(&self) -> bool {
        sys::is_shell_job()
            && sys::terminal_foreground()
                .is_some_and(|fg| fg == sys::pgrp() || (self.own_group && fg == self.pid))
    }
}

/// What runs a file that exists but whose exec said "not found": the kernel
/// found the file, not the program that runs it.
#[derive(Debug)]
pub struct Interpreter {
    /// The missing program, when it could be read from the file.
    path: Option<Vec<u8>>,
    named_by: NamedBy,
    /// The command as given.
    file: OsString,
}

#[derive(Debug, PartialEq, Eq)]
enum NamedBy {
    /// The file's `#!` line.
    Shebang,
    /// The ELF program's PT_INTERP: its dynamic loader.
    Elf,
    /// No `#!` line: `/bin/sh` runs it.
    NoShebang,
    /// Neither could be read.
    Unknown,
}

impl fmt::Display for Interpreter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = Escaped(self.file.as_bytes());
        let Some(path) = &self.path else {
            return write!(
                f,
                "interpreter not found for {file}: the file exists, but the program that runs it does not"
            );
        };
        let path = Escaped(path);
        match self.named_by {
            NamedBy::Shebang => write!(
                f,
                "interpreter not found: {path} (named on the #! line of {file})"
            ),
            NamedBy::Elf => write!(
                f,
                "interpreter not found: {path} (the dynamic loader that {file} needs)"
            ),
            NamedBy::NoShebang | NamedBy::Unknown => write!(
                f,
                "interpreter not found: {path} (needed to run {file}, which has no #! line)"
            ),
        }
    }
}

/// For a command whose exec said "not found": if the file is there (the
/// first one a `PATH` search finds), the interpreter it names is missing.
fn missing_interpreter(command: &OsString) -> Option<Interpreter> {
    let path = resolve(command)?;
    let mut file = File::open(&path).ok();
    let mut head = Vec::with_capacity(256);
    if let Some(f) = file.as_mut() {
        // The kernel reads at most 256 bytes for the #! line.
        let _ = f.take(256).read_to_end(&mut head);
    }
    let (found, named_by) = if let Some(rest) = head.strip_prefix(b"#!") {
        (shebang(rest), NamedBy::Shebang)
    } else if head.starts_with(b"\x7fELF") {
        (file.as_ref().and_then(elf_interpreter), NamedBy::Elf)
    } else {
        (None, NamedBy::Unknown)
    };
    Some(Interpreter {
        path: found,
        named_by,
        file: command.clone(),
    })
}

/// The file execvp would have run: the command itself if it has a `/`, else
/// the first `PATH` entry that has it.
fn resolve(command: &OsString) -> Option<PathBuf> {
    let bytes = command.as_bytes();
    if bytes.contains(&b'/') {
        let path = PathBuf::from(command);
        return path.is_file().then_some(path);
    }
    if bytes.is_empty() {
        return None;
    }
    let search = std::env::var_os("PATH").map_or_else(
        || b"/usr/local/bin:/bin:/usr/bin".to_vec(),
        OsString::into_vec,
    );
    search
        .split(|b| *b == b':')
        .map(|dir| Path::new(std::ffi::OsStr::from_bytes(dir)).join(command))
        .find(|p| p.is_file())
}

/// The interpreter on a `#!` line (after the `#!`), as the kernel reads it.
fn shebang(rest: &[u8]) -> Option<Vec<u8>> {
    let line = rest.split(|b| *b == b'\n').next()?;
    let path = line
        .split(|b| matches!(b, b' ' | b'\t' | b'\0'))
        .find(|w| !w.is_empty())?;
    Some(path.to_vec())
}

/// The PT_INTERP path of an ELF file (its dynamic loader), if it has one.
fn elf_interpreter(file: &File) -> Option<Vec<u8>> {
    let mut header = [0u8; 64];
    file.read_exact_at(&mut header, 0).ok()?;
    let wide = match header.get(4)? {
        1 => false,
        2 => true,
        _ => return None,
    };
    let little = *header.get(5)? == 1;
    let num = |bytes: &[u8], at: usize, len: usize| -> Option<u64> {
        let b = bytes.get(at..at.checked_add(len)?)?;
        let mut out: u64 = 0;
        for i in 0..len {
            let byte = if little {
                b.get(len.checked_sub(1)?.checked_sub(i)?)?
            } else {
                b.get(i)?
            };
            out = out.checked_shl(8)? | u64::from(*byte);
        }
        Some(out)
    };
    // (phoff, phentsize, phnum) and, in a program header, (offset, filesz).
    let (phoff, entsize, count) = if wide {
        (
            num(&header, 32, 8)?,
            num(&header, 54, 2)?,
            num(&header, 56, 2)?,
        )
    } else {
        (
            num(&header, 28, 4)?,
            num(&header, 42, 2)?,
            num(&header, 44, 2)?,
        )
    };
    let mut entry = [0u8; 56];
    let entry_len = if wide { 56 } else { 32 };
    let entry = entry.get_mut(..entry_len)?;
    for i in 0..count.min(256) {
        let at = phoff.checked_add(i.checked_mul(entsize)?)?;
        file.read_exact_at(entry, at).ok()?;
        if num(entry, 0, 4)? != 3 {
            continue; // not PT_INTERP
        }
        let (offset, size) = if wide {
            (num(entry, 8, 8)?, num(entry, 32, 8)?)
        } else {
            (num(entry, 4, 4)?, num(entry, 16, 4)?)
        };
        let mut path = vec![0u8; usize::try_from(size.min(4096)).ok()?];
        file.read_exact_at(&mut path, offset).ok()?;
        let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
        path.truncate(end);
        return Some(path);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_interpreter_on_a_shebang_line() {
        assert_eq!(shebang(b"/bin/sh\necho"), Some(b"/bin/sh".to_vec()));
        assert_eq!(
            shebang(b" /usr/bin/env python3\n"),
            Some(b"/usr/bin/env".to_vec())
        );
        assert_eq!(shebang(b"\t/x\t-e"), Some(b"/x".to_vec()));
        assert_eq!(shebang(b"\n/not/this"), None);
        assert_eq!(shebang(b""), None);
    }

    #[test]
    fn reads_the_dynamic_loader_of_an_elf_file() {
        // The test binary itself is dynamically linked on glibc targets and
        // static on musl: either way the parser must not fail on it.
        let me = File::open(std::env::current_exe().unwrap()).unwrap();
        if let Some(interp) = elf_interpreter(&me) {
            assert!(interp.starts_with(b"/"), "{interp:?}");
            assert!(Path::new(std::ffi::OsStr::from_bytes(&interp)).exists());
        }
        // Not ELF: nothing, and no panic on short or garbage files.
        let dir = std::env::temp_dir().join(format!("drainit-elf-{}", std::process::id()));
        std::fs::write(&dir, b"\x7fELF\x02\x01garbage").unwrap();
        assert_eq!(elf_interpreter(&File::open(&dir).unwrap()), None);
        let _ = std::fs::remove_file(&dir);
    }

    #[test]
    fn says_which_interpreter_is_missing_in_one_escaped_line() {
        let i = Interpreter {
            path: Some(b"/no/interp\x1b".to_vec()),
            named_by: NamedBy::Shebang,
            file: "./b\n.sh".into(),
        };
        assert_eq!(
            i.to_string(),
            "interpreter not found: /no/interp\\u{1b} (named on the #! line of ./b\\n.sh)"
        );
    }
}
