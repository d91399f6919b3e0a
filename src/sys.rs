//! The only module allowed `unsafe` and raw libc: argv decoding, the signal
//! mask (raw `rt_sigprocmask`, which musl's wrapper would not let
//! touch signals 32–34), dispositions, signalfd, poll, `waitpid`, `kill`,
//! the subreaper flag and the terminal hand-off. Everything here is a thin,
//! documented wrapper; the decisions live elsewhere.

use std::ffi::{CStr, CString, OsString, c_int, c_long};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::exit::Status;
use crate::signals::{self, SigSet};

/// The size of the kernel's signal set, which the raw syscalls take.
const KERNEL_SIGSET_BYTES: usize = 8;

/// The command line as the C runtime hands it over: `argc` NUL-terminated
/// strings in `argv`, copied into owned values byte for byte. Only for the
/// entry point in `main.rs`, which passes on exactly what the C runtime gave it
/// (this keeps every `unsafe` block in this module).
#[cfg_attr(test, allow(dead_code))]
pub fn args_from_c(argc: c_int, argv: *const *const std::ffi::c_char) -> Vec<OsString> {
    let count = usize::try_from(argc).unwrap_or(0);
    let mut args = Vec::with_capacity(count);
    for i in 0..count {
        // SAFETY: the C runtime passes `argc` valid pointers in `argv` (the only
        // caller is the entry point, with the C runtime's own arguments).
        let arg = unsafe { *argv.add(i) };
        if arg.is_null() {
            break;
        }
        // SAFETY: each argv entry is a NUL-terminated string that lives for the
        // call; we copy its bytes out at once.
        let bytes = unsafe { CStr::from_ptr(arg) }.to_bytes().to_vec();
        args.push(OsString::from_vec(bytes));
    }
    args
}

fn check(ret: c_long) -> io::Result<c_long> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `rt_sigprocmask` straight to the kernel, so real-time signals 32–34 count too.
fn sigprocmask(how: c_int, set: Option<SigSet>) -> io::Result<SigSet> {
    let new = set.map(|s| s.0);
    let mut old: u64 = 0;
    let new_ptr = new.as_ref().map_or(std::ptr::null(), |s| s as *const u64);
    // SAFETY: both pointers are null or point to 8-byte sets that outlive the call,
    // and the size passed is that of the kernel's sigset.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            how,
            new_ptr,
            &mut old as *mut u64,
            KERNEL_SIGSET_BYTES,
        )
    };
    check(ret).map(|_| SigSet(old))
}

/// Blocks SIGPIPE, so that a write to a pipe whose reader has gone fails
/// with EPIPE instead of killing drainit (whatever mask the mode runs with).
pub fn block_sigpipe() -> io::Result<()> {
    let pipe = SigSet::EMPTY.with(signals::Signal::PIPE);
    sigprocmask(libc::SIG_BLOCK, Some(pipe)).map(|_| ())
}

/// The kernel's `struct sigaction` on x86_64 (not libc's).
#[repr(C)]
#[derive(Default)]
struct KernelSigaction {
    handler: usize,
    flags: u64,
    restorer: usize,
    mask: u64,
}

/// `rt_sigaction` straight to the kernel; with `new` = `None` it only reads.
fn sigaction(signal: i32, new: Option<&KernelSigaction>) -> io::Result<KernelSigaction> {
    let mut old = KernelSigaction::default();
    let new_ptr = new.map_or(std::ptr::null(), |n| n as *const KernelSigaction);
    // SAFETY: the pointers are null or point to live structs laid out as the
    // kernel's `struct sigaction`; only SIG_DFL and SIG_IGN are ever installed,
    // so no handler or restorer is needed.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            signal,
            new_ptr,
            &mut old as *mut KernelSigaction,
            KERNEL_SIGSET_BYTES,
        )
    };
    check(ret).map(|_| old)
}

/// The signal state drainit was started with, to be handed to the app unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inherited {
    pub mask: SigSet,
    pub ignored: SigSet,
}

/// Blocks every catchable signal (so none is lost, not even as PID 1, and none
/// stops or kills drainit), then resets every ignored one to its default so it
/// reaches the signalfd (SIGCHLD above all: ignored, it would make the kernel
/// reap children and lose their exit codes). Returns what was there before.
pub fn take_over_signals() -> io::Result<Inherited> {
    let mask = sigprocmask(libc::SIG_BLOCK, Some(SigSet::catchable()))?;
    let mut ignored = SigSet::EMPTY;
    for signal in SigSet::catchable().iter() {
        let old = sigaction(signal.number(), None)?;
        if old.handler == libc::SIG_IGN {
            ignored = ignored.with(signal);
            sigaction(signal.number(), Some(&KernelSigaction::default()))?;
        }
    }
    Ok(Inherited { mask, ignored })
}

/// Gives back the signal state drainit was started with (the mask and the
/// ignored signals), for the modes that run no app (`--healthcheck`,
/// `--explain`): a SIGTERM then ends them as it would any program. SIGPIPE
/// stays blocked: a write to a closed pipe fails with EPIPE, and the mode
/// exits with its documented code instead of being killed.
pub fn restore(inherited: Inherited) {
    let mask = match signals::Signal::new(libc::SIGPIPE) {
        Some(pipe) => inherited.mask.with(pipe),
        None => inherited.mask,
    };
    child_setup(Inherited { mask, ..inherited }, false);
}

/// One signal read from the signalfd.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub signal: i32,
    /// The sender's pid as seen from drainit's namespace (0 for the kernel or
    /// a sender outside it).
    pub sender: u32,
}

/// A non-blocking, close-on-exec signalfd for the given set.
pub struct SignalFd(OwnedFd);

impl SignalFd {
    pub fn new(set: SigSet) -> io::Result<SignalFd> {
        let mask = set.0;
        let flags = libc::SFD_CLOEXEC | libc::SFD_NONBLOCK;
        // SAFETY: `mask` is an 8-byte kernel sigset that outlives the call.
        let fd = check(unsafe {
            libc::syscall(
                libc::SYS_signalfd4,
                -1,
                &mask as *const u64,
                KERNEL_SIGSET_BYTES,
                flags,
            )
        })?;
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as c_int) };
        Ok(SignalFd(above_stdio(fd)?))
    }

    /// Appends every pending signal to `out`; returns when none is left.
    pub fn read_all(&self, out: &mut Vec<Received>) -> io::Result<()> {
        const N: usize = 16;
        // SAFETY: signalfd_siginfo is plain old data; all-zero is a valid value.
        let mut buf: [libc::signalfd_siginfo; N] = unsafe { std::mem::zeroed() };
        let size = std::mem::size_of::<libc::signalfd_siginfo>();
        loop {
            // SAFETY: `buf` is writable for N * size bytes and outlives the call.
            let n = unsafe { libc::read(self.0.as_raw_fd(), buf.as_mut_ptr().cast(), N * size) };
            if n < 0 {
                let err = io::Error::last_os_error();
                return match err.kind() {
                    io::ErrorKind::WouldBlock => Ok(()),
                    io::ErrorKind::Interrupted => continue,
                    _ => Err(err),
                };
            }
            let count = n as usize / size;
            out.extend(buf.iter().take(count).map(|i| Received {
                signal: i.ssi_signo as i32,
                sender: i.ssi_pid,
            }));
            if count < N {
                return Ok(());
            }
        }
    }

    /// Sleeps until a signal is pending or `timeout` passes (`None`: no timeout).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        let ms = timeout.map_or(-1, |t| {
            // Round up, so that a wake-up is never early and never spins.
            let ms = t.as_nanos().div_ceil(1_000_000);
            c_int::try_from(ms).unwrap_or(c_int::MAX)
        });
        let mut pfd = libc::pollfd {
            fd: self.0.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, living on this stack frame, for the call.
        let ret = unsafe { libc::poll(&mut pfd, 1, ms) };
        match check(ret as c_long) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

/// Moves a descriptor that landed on 0, 1 or 2 (drainit started with them
/// closed) out of the app's way.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    // SAFETY: F_DUPFD_CLOEXEC on a descriptor we own returns a new one we own.
    let new = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 3) } as c_long)?;
    // SAFETY: the kernel just returned this descriptor; `fd` is closed on drop.
    Ok(unsafe { OwnedFd::from_raw_fd(new as c_int) })
}

/// Reaps one exited child, if any: `waitpid(-1, WNOHANG)`. Stopped and
/// continued children are not reported, so a stopped app is never taken for
/// an exited one.
pub fn reap_one() -> Option<(i32, Status)> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid, writable int for the call.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if pid <= 0 {
            return None;
        }
        if libc::WIFEXITED(status) {
            return Some((pid, Status::Exited(libc::WEXITSTATUS(status))));
        }
        if libc::WIFSIGNALED(status) {
            return Some((pid, Status::Signaled(libc::WTERMSIG(status))));
        }
    }
}

/// Whom a signal goes to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Pid(i32),
    Group(i32),
    /// Every process drainit may signal but itself: `kill(-1)`. Only as PID 1,
    /// where that means everything left in the container.
    All,
}

/// Sends `signal` (0: only checks) to `target`. `Ok(false)`: nobody was there.
pub fn send(target: Target, signal: i32) -> io::Result<bool> {
    let pid = match target {
        Target::Pid(p) if p > 0 => p,
        Target::Group(g) if g > 1 => -g,
        Target::All => -1,
        _ => return Ok(false),
    };
    // SAFETY: kill(2) takes plain integers; the pid forms were checked above, so
    // a bad value can never turn into a broadcast.
    let ret = unsafe { libc::kill(pid, signal) };
    match check(ret as c_long) {
        Ok(_) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether anyone is left in `target` (a process that exists but that drainit
/// may not signal counts as there).
pub fn anyone_in(target: Target) -> bool {
    match send(target, 0) {
        Ok(found) => found,
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// Makes orphans of drainit's descendants its children, as they would be of a PID 1.
pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument only.
    check(
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) } as c_long,
    )
    .map(|_| ())
}

pub fn pid() -> i32 {
    // SAFETY: getpid cannot fail and has no side effects.
    unsafe { libc::getpid() }
}

/// drainit's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no side effects.
    unsafe { libc::geteuid() }
}

/// `renameat2(from, to, RENAME_NOREPLACE)`: moves `from` to `to` only if
/// nothing is at `to` (`EEXIST` otherwise); a link at `to` is not followed.
/// `EINVAL` where the file system cannot do it.
pub fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    let c = |p: &Path| {
        CString::new(p.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
    };
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: both pointers are NUL-terminated strings that outlive the call;
    // the other arguments are plain integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    check(ret).map(|_| ())
}

/// Whether stdin is a terminal whose foreground drainit holds: then the app's
/// group should get it, for Ctrl-C and job control.
pub fn holds_terminal_foreground() -> bool {
    // SAFETY: isatty, tcgetpgrp and getpgrp only read process and terminal state.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

/// Makes the child, between fork and exec, start exactly as drainit was
/// started: the inherited signal mask and ignored signals, and, when asked,
/// the terminal's foreground.
pub fn prepare_child(command: &mut Command, inherited: Inherited, take_terminal: bool) {
    let closure = move || {
        child_setup(inherited, take_terminal);
        Ok(())
    };
    // SAFETY: `child_setup` runs in the forked child before exec and only makes
    // async-signal-safe syscalls (rt_sigprocmask, rt_sigaction, tcsetpgrp,
    // getpid); it allocates nothing, takes no lock and does not log.
    unsafe {
        command.pre_exec(closure);
    }
}

fn child_setup(inherited: Inherited, take_terminal: bool) {
    // Keep everything blocked while arranging (SIGTTOU above all, which
    // tcsetpgrp from a background group would otherwise raise).
    let _ = sigprocmask(libc::SIG_SETMASK, Some(SigSet::catchable()));
    if take_terminal {
        // SAFETY: tcsetpgrp and getpid take integers; on failure the app simply
        // starts without the foreground.
        let _ = unsafe { libc::tcsetpgrp(0, libc::getpid()) };
    }
    let ignore = KernelSigaction {
        handler: libc::SIG_IGN,
        ..KernelSigaction::default()
    };
    let mut n = 1;
    while n <= signals::MAX {
        if n != signals::KILL && n != signals::STOP && inherited.ignored.0 & (1 << (n - 1)) != 0 {
            let _ = sigaction(n, Some(&ignore));
        }
        n += 1;
    }
    let _ = sigprocmask(libc::SIG_SETMASK, Some(inherited.mask));
}

/// One descriptor for [`poll`], and what to wait for on it.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct PollFd(libc::pollfd);

impl PollFd {
    pub fn readable(fd: c_int) -> PollFd {
        PollFd(libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
    }

    pub fn writable(fd: c_int) -> PollFd {
        PollFd(libc::pollfd {
            fd,
            events: libc::POLLOUT,
            revents: 0,
        })
    }

    /// Whether the last `poll` found it ready (or in error, or hung up: then
    /// the next read or write says so).
    pub fn ready(&self) -> bool {
        self.0.revents != 0
    }
}

/// Sleeps until one of `fds` is ready or `timeout` passes (`None`: no timeout).
pub fn poll(fds: &mut [PollFd], timeout: Option<Duration>) -> io::Result<usize> {
    let ms = timeout.map_or(-1, |t| {
        // Round up, so that a wake-up is never early and never spins.
        c_int::try_from(t.as_nanos().div_ceil(1_000_000)).unwrap_or(c_int::MAX)
    });
    let count = libc::nfds_t::try_from(fds.len()).unwrap_or(libc::nfds_t::MAX);
    // SAFETY: `PollFd` is `repr(transparent)` over `libc::pollfd`, and the slice
    // is valid and writable for `fds.len()` entries for the whole call.
    let ret = unsafe { libc::poll(fds.as_mut_ptr().cast::<libc::pollfd>(), count, ms) };
    match check(ret as c_long) {
        Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
        other => other.map(|n| usize::try_from(n).unwrap_or(0)),
    }
}
