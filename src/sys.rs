//! The only module allowed `unsafe` and raw libc: argv decoding, the signal
//! mask (raw `rt_sigprocmask`, which musl's wrapper would not let
//! touch signals 32–34), dispositions, signalfd, poll, `waitpid`, `kill`,
//! the subreaper flag, the terminal hand-off, and starting the app
//! (`clone(CLONE_VM | CLONE_VFORK)` and an `execvp` of our own). Everything
//! here is a thin, documented wrapper; the decisions live elsewhere.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::UnsafeCell;
use std::ffi::{CStr, CString, OsString, c_char, c_int, c_long, c_void};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::exit::Status;
use crate::signals::{SigSet, Signal};

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
    let pipe = SigSet::EMPTY.with(Signal::PIPE);
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
    /// The ignored signals drainit reset to their default, which the app must
    /// get back as ignored: SIGCHLD, if it was. (Every other disposition is left
    /// as it was, so the app inherits it as it is.)
    pub ignored: SigSet,
}

/// Blocks every catchable signal (so none is lost, not even as PID 1, and none
/// stops or kills drainit), and resets SIGCHLD to its default: ignored (or
/// with SA_NOCLDWAIT), it would make the kernel reap children and lose their
/// exit codes. Returns what was there before. Two syscalls.
///
/// The other ignored signals need no change: the kernel never discards a
/// blocked signal as ignored (it may be unblocked later), so drainit's
/// signalfd reads them all the same, and leaving them as they are is what
/// hands them on to the app.
pub fn take_over_signals() -> io::Result<Inherited> {
    let mask = sigprocmask(libc::SIG_BLOCK, Some(SigSet::catchable()))?;
    let chld = Signal::CHLD;
    let old = sigaction(chld.number(), Some(&KernelSigaction::default()))?;
    let ignored = if old.handler == libc::SIG_IGN {
        SigSet::EMPTY.with(chld)
    } else {
        SigSet::EMPTY
    };
    Ok(Inherited { mask, ignored })
}

/// Gives back the signal state drainit was started with (the mask and the
/// ignored signals), for the modes that run no app (`--healthcheck`,
/// `--explain`): a SIGTERM then ends them as it would any program. SIGPIPE
/// stays blocked: a write to a closed pipe fails with EPIPE, and the mode
/// exits with its documented code instead of being killed.
pub fn restore(inherited: Inherited) {
    let ignore = KernelSigaction {
        handler: libc::SIG_IGN,
        ..KernelSigaction::default()
    };
    for signal in inherited.ignored.iter().filter(|s| s.catchable()) {
        let _ = sigaction(signal.number(), Some(&ignore));
    }
    let _ = sigprocmask(libc::SIG_SETMASK, Some(inherited.mask.with(Signal::PIPE)));
}

/// One signal read from the signalfd.
#[derive(Clone, Copy, Debug)]
pub struct Received {
    pub signal: i32,
    /// The sender's pid as seen from drainit's namespace (0 for the kernel or
    /// a sender outside it).
    pub sender: u32,
    /// Raised by the kernel (a terminal's Ctrl-C or Ctrl-Z, a background read),
    /// not sent by a process.
    pub from_kernel: bool,
}

/// How many signals one read takes at most.
const BATCH: usize = 16;

/// The signals one `SignalFd::read` took, kept on the stack of the loop that
/// reads them: the hot path touches no heap.
pub struct Batch {
    len: usize,
    items: [Received; BATCH],
    /// Which signals are among them.
    signals: SigSet,
}

impl Batch {
    pub fn new() -> Batch {
        Batch {
            len: 0,
            items: [Received {
                signal: 0,
                sender: 0,
                from_kernel: false,
            }; BATCH],
            signals: SigSet::EMPTY,
        }
    }

    pub fn as_slice(&self) -> &[Received] {
        self.items.get(..self.len).unwrap_or(&[])
    }

    pub fn signals(&self) -> SigSet {
        self.signals
    }
}

/// A close-on-exec signalfd for the given set, read the cheapest way: with
/// nothing due, the read itself is the wait (one syscall per wake, as for
/// catatonit); with a deadline, `poll` bounds it.
pub struct SignalFd {
    fd: OwnedFd,
    /// What the next `read` may do, as the last `wait` found it.
    next: std::cell::Cell<NextRead>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NextRead {
    /// No deadline: block until a signal comes.
    Block,
    /// `poll` said a signal is pending.
    Ready,
    /// The deadline came first: nothing to read.
    Nothing,
}

impl SignalFd {
    pub fn new(set: SigSet) -> io::Result<SignalFd> {
        let mask = set.0;
        // SAFETY: `mask` is an 8-byte kernel sigset that outlives the call.
        let fd = check(unsafe {
            libc::syscall(
                libc::SYS_signalfd4,
                -1,
                &mask as *const u64,
                KERNEL_SIGSET_BYTES,
                libc::SFD_CLOEXEC,
            )
        })?;
        // SAFETY: the kernel just returned this descriptor to us; nothing else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as c_int) };
        Ok(SignalFd {
            fd: above_stdio(fd)?,
            next: std::cell::Cell::new(NextRead::Nothing),
        })
    }

    /// Reads pending signals into `out` (at most a batch's worth; more stay
    /// pending, and the next `wait` finds them at once), after `wait`: blocks
    /// for the first one if `wait` had no timeout, and never blocks otherwise.
    pub fn read(&self, out: &mut Batch) -> io::Result<()> {
        out.len = 0;
        out.signals = SigSet::EMPTY;
        if self.next.replace(NextRead::Nothing) == NextRead::Nothing {
            return Ok(());
        }
        // Not zeroed: this runs on every wake, and the kernel fills what it returns.
        let mut buf = [const { std::mem::MaybeUninit::<libc::signalfd_siginfo>::uninit() }; BATCH];
        let n = loop {
            // SAFETY: `buf` is writable for its whole size and outlives the call.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast(),
                    std::mem::size_of_val(&buf),
                )
            };
            if n >= 0 {
                break n;
            }
            let err = io::Error::last_os_error();
            if err.kind() != io::ErrorKind::Interrupted {
                return Err(err);
            }
        };
        // A signalfd returns whole records only.
        let count = usize::try_from(n)
            .unwrap_or(0)
            .checked_div(std::mem::size_of::<libc::signalfd_siginfo>())
            .unwrap_or(0);
        for (slot, record) in out.items.iter_mut().zip(buf.iter().take(count)) {
            // SAFETY: the kernel wrote the first `count` records in full.
            let record = unsafe { record.assume_init_ref() };
            *slot = Received {
                signal: record.ssi_signo as i32,
                sender: record.ssi_pid,
                from_kernel: record.ssi_code == libc::SI_KERNEL,
            };
            if let Some(signal) = Signal::new(slot.signal) {
                out.signals = out.signals.with(signal);
            }
            out.len = out.len.saturating_add(1);
        }
        Ok(())
    }

    /// Waits until a signal is pending or `timeout` passes (`None`: no
    /// timeout, and then the wait is `read`'s read).
    pub fn wait(&self, timeout: Option<Duration>) -> io::Result<()> {
        let next = match timeout {
            None => NextRead::Block,
            Some(_) if self.readable(timeout)? => NextRead::Ready,
            Some(_) => NextRead::Nothing,
        };
        self.next.set(next);
        Ok(())
    }

    /// As `wait`, but also wakes when one of `others` is readable (or hung
    /// up): for the pipes of running drain actions. Never blocks in `read`.
    pub fn wait_also(&self, others: &[c_int], timeout: Option<Duration>) -> io::Result<()> {
        let mut fds = Vec::with_capacity(others.len().saturating_add(1));
        fds.push(PollFd::readable(self.fd.as_raw_fd()));
        fds.extend(others.iter().map(|fd| PollFd::readable(*fd)));
        self.next.set(NextRead::Nothing);
        poll(&mut fds, timeout)?;
        if fds.first().is_some_and(PollFd::ready) {
            self.next.set(NextRead::Ready);
        }
        Ok(())
    }

    /// `poll` for a pending signal, at most `timeout`; false on EINTR.
    fn readable(&self, timeout: Option<Duration>) -> io::Result<bool> {
        poll(&mut [PollFd::readable(self.fd.as_raw_fd())], timeout).map(|n| n > 0)
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

/// What `waitpid` reported about a child.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildChange {
    /// It exited and is reaped.
    Exited(Status),
    /// It was stopped by this signal (reported once per stop).
    Stopped(i32),
}

/// The next change of a child, if any: `waitpid(-1, WNOHANG | WUNTRACED)`,
/// which reaps an exited child or reports a stopped one, so a stopped app is
/// never taken for an exited one. Continued children are not reported.
/// `None`: nothing left to report now; a child that exits or stops from now
/// on raises a new SIGCHLD.
pub fn next_child_change() -> Option<(i32, ChildChange)> {
    loop {
        let mut status: c_int = 0;
        // SAFETY: `status` is a valid, writable int for the call.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG | libc::WUNTRACED) };
        if pid < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        if pid <= 0 {
            return None;
        }
        if libc::WIFEXITED(status) {
            return Some((
                pid,
                ChildChange::Exited(Status::Exited(libc::WEXITSTATUS(status))),
            ));
        }
        if libc::WIFSIGNALED(status) {
            return Some((
                pid,
                ChildChange::Exited(Status::Signaled(libc::WTERMSIG(status))),
            ));
        }
        if libc::WIFSTOPPED(status) {
            return Some((pid, ChildChange::Stopped(libc::WSTOPSIG(status))));
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
        Target::Group(g) if g > 1 => g.wrapping_neg(),
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

/// A `NETLINK_SOCK_DIAG` socket (what `ss` reads sockets through), with
/// `timeout` on every receive, so that no answer can hold the loop.
pub fn sock_diag_socket(timeout: Duration) -> io::Result<OwnedFd> {
    // SAFETY: socket takes integer arguments only; the result is checked.
    let fd = check(unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            libc::NETLINK_SOCK_DIAG,
        )
    } as c_long)?;
    // SAFETY: `fd` was just created by socket(2) and is owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as c_int) };
    let tv = libc::timeval {
        tv_sec: timeout.as_secs().min(3600).try_into().unwrap_or(1),
        tv_usec: timeout.subsec_micros().into(),
    };
    // SAFETY: `tv` is a valid timeval that outlives the call, and its size is passed.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&raw const tv).cast::<c_void>(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    } as c_long)?;
    Ok(fd)
}

/// `send(2)` of one datagram.
pub fn send_datagram(fd: &OwnedFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `bytes`, which outlives the call.
    let n = check(unsafe {
        libc::send(
            fd.as_raw_fd(),
            bytes.as_ptr().cast::<c_void>(),
            bytes.len(),
            0,
        )
    } as c_long)?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// `recv(2)` of one datagram into `buf`; its length (0: nothing more).
pub fn recv_datagram(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    // SAFETY: the pointer and length describe `buf`, writable and outliving the call.
    let n = check(unsafe {
        libc::recv(
            fd.as_raw_fd(),
            buf.as_mut_ptr().cast::<c_void>(),
            buf.len(),
            0,
        )
    } as c_long)?;
    Ok(usize::try_from(n).unwrap_or(0).min(buf.len()))
}

pub fn pid() -> i32 {
    // SAFETY: getpid cannot fail and has no side effects.
    unsafe { libc::getpid() }
}

/// Whether drainit may execute the file at `path` (`access(2)`, `X_OK`).
pub fn may_execute(path: &Path) -> bool {
    let Ok(path) = CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    unsafe { libc::access(path.as_ptr(), libc::X_OK) == 0 }
}

/// drainit's effective user id.
pub fn euid() -> u32 {
    // SAFETY: geteuid cannot fail and has no side effects.
    unsafe { libc::geteuid() }
}

/// A directory opened for `*at` calls only (`O_PATH|O_DIRECTORY`), the path
/// followed as it is now: from then on names are looked up in that directory,
/// wherever it is moved and whatever is put at its old path.
pub fn open_dir(path: &Path) -> io::Result<OwnedFd> {
    let path = c_path(path.as_os_str().as_bytes())?;
    // SAFETY: `path` is a NUL-terminated string that outlives the call.
    // (openat: musl's open follows O_CLOEXEC with a needless fcntl.)
    let fd = check(unsafe {
        libc::openat(
            libc::AT_FDCWD,
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    } as c_long)?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    above_stdio(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

fn c_path(bytes: &[u8]) -> io::Result<CString> {
    CString::new(bytes).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

/// `openat(dir, name, flags | O_CLOEXEC | O_NOFOLLOW, mode)`: `name` is one
/// file name in `dir`, never followed if it is a link.
pub fn open_at(dir: &OwnedFd, name: &[u8], flags: c_int, mode: u32) -> io::Result<OwnedFd> {
    let name = c_path(name)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call; the
    // other arguments are plain integers.
    let fd = check(unsafe {
        libc::openat(
            dir.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
            mode as libc::c_uint,
        )
    } as c_long)?;
    // SAFETY: the kernel just returned this descriptor; nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as c_int) })
}

/// `renameat2(dir, from, dir, to, RENAME_NOREPLACE)`: moves `from` to `to`
/// only if nothing is at `to` (`EEXIST` otherwise); a link at `to` is not
/// followed. `EINVAL` where the file system cannot do it.
pub fn rename_noreplace_at(dir: &OwnedFd, from: &[u8], to: &[u8]) -> io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both names are NUL-terminated strings that outlive the call;
    // the other arguments are plain integers.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            dir.as_raw_fd(),
            from.as_ptr(),
            dir.as_raw_fd(),
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    check(ret).map(|_| ())
}

/// `linkat(dir, from, dir, to, 0)`: a new name, never replacing one, for a
/// file (a link at `from` is not followed).
pub fn link_at(dir: &OwnedFd, from: &[u8], to: &[u8]) -> io::Result<()> {
    let (from, to) = (c_path(from)?, c_path(to)?);
    // SAFETY: both names are NUL-terminated strings that outlive the call.
    let ret = unsafe {
        libc::linkat(
            dir.as_raw_fd(),
            from.as_ptr(),
            dir.as_raw_fd(),
            to.as_ptr(),
            0,
        )
    };
    check(ret as c_long).map(|_| ())
}

/// `unlinkat(dir, name, 0)`: removes a name (never a directory) in `dir`.
pub fn unlink_at(dir: &OwnedFd, name: &[u8]) -> io::Result<()> {
    let name = c_path(name)?;
    // SAFETY: `name` is a NUL-terminated string that outlives the call.
    let ret = unsafe { libc::unlinkat(dir.as_raw_fd(), name.as_ptr(), 0) };
    check(ret as c_long).map(|_| ())
}

/// Where the symbolic link `name` in `dir` points (at most 4096 bytes of it).
pub fn readlink_at(dir: &OwnedFd, name: &[u8]) -> io::Result<Vec<u8>> {
    let name = c_path(name)?;
    let mut buf = vec![0u8; PATH_MAX];
    // SAFETY: `name` is NUL-terminated; `buf` is writable for its whole length.
    let n = check(unsafe {
        libc::readlinkat(
            dir.as_raw_fd(),
            name.as_ptr(),
            buf.as_mut_ptr().cast::<c_char>(),
            buf.len(),
        )
    } as c_long)?;
    buf.truncate(usize::try_from(n).unwrap_or(0));
    Ok(buf)
}

/// Whether stdin is a terminal whose foreground drainit holds: then the app's
/// group should get it, for Ctrl-C and job control.
pub fn holds_terminal_foreground() -> bool {
    // SAFETY: isatty, tcgetpgrp and getpgrp only read process and terminal state.
    unsafe { libc::isatty(0) == 1 && libc::tcgetpgrp(0) == libc::getpgrp() }
}

// ---------------------------------------------------------------- drainit's own stack

/// Under a stack limit below this (`ulimit -s`, `RLIMIT_STACK`), drainit
/// does not run on the kernel's stack: it needs ~64 KiB there (clap builds
/// its command on ~50 KiB; the app's child runs on 32 KiB), plus what the
/// kernel puts there (arguments and environment, at most a quarter of the
/// limit).
const SMALL_STACK_LIMIT: u64 = 256 * 1024;
/// The stack drainit maps for itself then; its pages cost memory only once
/// touched. A guard page below it.
const OWN_STACK_BYTES: usize = 256 * 1024;
const PAGE: usize = 4096;

/// Runs `f` where it fits: on the kernel's stack at an ordinary stack limit
/// (8 MiB by default; nothing is mapped, no syscall but `getrlimit`), on a
/// stack mapped for it under a small one, so that `ulimit -s 16` no longer
/// kills drainit at start. `Err` (before `f` runs): no memory for that stack.
pub fn on_a_stack_that_fits(f: impl FnOnce() -> i32) -> io::Result<i32> {
    let mut limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid, writable rlimit for the call.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_STACK, &mut limit) } == 0;
    if !known || limit.rlim_cur >= SMALL_STACK_LIMIT {
        return Ok(f());
    }
    Ok(MappedStack::new(OWN_STACK_BYTES)?.run(f))
}

/// A stack of drainit's own: anonymous memory with a guard page below it.
struct MappedStack {
    base: *mut u8,
    /// Guard page included.
    len: usize,
}

impl MappedStack {
    fn new(bytes: usize) -> io::Result<MappedStack> {
        let len = bytes
            .checked_add(PAGE)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOMEM))?;
        // SAFETY: a new private anonymous mapping; no existing memory is touched.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the lowest page of the mapping just made, which nothing uses:
        // an overflow faults there instead of running into other memory.
        if unsafe { libc::mprotect(base, PAGE, libc::PROT_NONE) } < 0 {
            let e = io::Error::last_os_error();
            // SAFETY: the mapping just made, unused.
            unsafe { libc::munmap(base, len) };
            return Err(e);
        }
        Ok(MappedStack {
            base: base.cast::<u8>(),
            len,
        })
    }

    /// Runs `f` with the stack pointer at the top of this stack.
    fn run(&self, f: impl FnOnce() -> i32) -> i32 {
        let mut f = Some(f);
        // Only if the switch never called `call` (it always does).
        let mut out = crate::exit::OWN_ERROR;
        let mut call = || {
            if let Some(f) = f.take() {
                out = f();
            }
        };
        let mut call: &mut dyn FnMut() = &mut call;
        let top = self.base.wrapping_add(self.len);
        // SAFETY: `top` is the page-aligned end of a writable mapping that is
        // ours alone, `len - PAGE` bytes above its guard page; `call` lives in
        // this frame until the switch has returned.
        unsafe { switch_stack(top, (&raw mut call).cast::<c_void>()) };
        out
    }
}

impl Drop for MappedStack {
    fn drop(&mut self) {
        // SAFETY: the mapping `new` made, no longer in use (`run` has returned).
        unsafe { libc::munmap(self.base.cast::<c_void>(), self.len) };
    }
}

/// Called on the new stack: runs the `&mut dyn FnMut()` that `data` points to.
extern "C" fn on_new_stack(data: *mut c_void) {
    // SAFETY: `data` is the `&mut &mut dyn FnMut()` that `MappedStack::run`
    // passed, alive (in its frame) for the whole call.
    let call = unsafe { &mut *data.cast::<&mut dyn FnMut()>() };
    call();
}

/// Calls `on_new_stack(data)` with the stack pointer at `top`, then puts the
/// caller's stack pointer back (kept in a callee-saved register meanwhile).
///
/// # Safety
/// `top` must be 16-aligned, the end of writable memory that nothing else
/// uses and that is large enough for everything `data`'s call does.
#[cfg(target_arch = "x86_64")]
unsafe fn switch_stack(top: *mut u8, data: *mut c_void) {
    // SAFETY: as the caller guarantees; r12 is callee-saved, so it holds the
    // old stack pointer across the call; the C ABI's clobbers are declared.
    unsafe {
        std::arch::asm!(
            "mov r12, rsp",
            "mov rsp, {top}",
            "call {f}",
            "mov rsp, r12",
            top = in(reg) top,
            f = sym on_new_stack,
            in("rdi") data,
            out("r12") _,
            clobber_abi("C"),
        );
    }
}

/// See the x86_64 version.
///
/// # Safety
/// As there.
#[cfg(target_arch = "aarch64")]
unsafe fn switch_stack(top: *mut u8, data: *mut c_void) {
    // SAFETY: as the caller guarantees; x20 is callee-saved, so it holds the
    // old stack pointer across the call; the C ABI's clobbers (x30 among them)
    // are declared.
    unsafe {
        std::arch::asm!(
            "mov x20, sp",
            "mov sp, {top}",
            "bl {f}",
            "mov sp, x20",
            top = in(reg) top,
            f = sym on_new_stack,
            in("x0") data,
            out("x20") _,
            clobber_abi("C"),
        );
    }
}

/// Elsewhere: no switch; the call runs on the caller's stack.
///
/// # Safety
/// None needed.
#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
unsafe fn switch_stack(_top: *mut u8, data: *mut c_void) {
    on_new_stack(data)
}

// ---------------------------------------------------------------- the allocator

/// How much the arena holds: what drainit allocates from its start to the
/// app's exec (the command line parsed by clap, the config, the logger) fits
/// with room to spare.
const ARENA_BYTES: usize = 256 * 1024;
/// Size classes: 16 B, 32 B, ... 64 KiB (powers of two).
const CLASSES: usize = 13;
const SMALLEST: usize = 16;

/// A bump arena in `.bss` (its pages cost nothing until touched).
#[repr(C, align(4096))]
struct ArenaBytes(UnsafeCell<[u8; ARENA_BYTES]>);

// SAFETY: the bytes are only reached through `Arena`, which hands out each
// range to one owner at a time (see its `GlobalAlloc` impl).
unsafe impl Sync for ArenaBytes {}

static ARENA: ArenaBytes = ArenaBytes(UnsafeCell::new([0; ARENA_BYTES]));

/// The arena's state, behind `Arena::LOCK`.
struct ArenaState {
    /// Offset of the first never-used byte.
    next: usize,
    /// Per size class, the offset + 1 of the first free block (0: none); a
    /// free block holds the next one's offset + 1 in its first 8 bytes.
    free: [usize; CLASSES],
}

struct ArenaCell(UnsafeCell<ArenaState>);

// SAFETY: only reached while holding `Arena::LOCK`.
unsafe impl Sync for ArenaCell {}

static STATE: ArenaCell = ArenaCell(UnsafeCell::new(ArenaState {
    next: 0,
    free: [0; CLASSES],
}));

/// drainit's allocator: blocks of 16 B to 64 KiB (rounded up to a power of
/// two) are carved from a fixed arena in `.bss` and reused through a free
/// list per size; bigger or over-aligned ones go to the C library's malloc,
/// and so does everything once the arena is full. So the start-up makes no
/// `mmap`/`munmap`/`brk` at all and costs a few instructions per allocation
/// (musl's allocator: a hundred or more, and it unmaps what it frees).
struct Arena;

#[global_allocator]
static ALLOCATOR: Arena = Arena;

/// A spin lock for `STATE`: the critical sections are a few instructions
/// long and never allocate, and drainit has no signal handler that could
/// re-enter them.
static ARENA_LOCK: AtomicBool = AtomicBool::new(false);

impl Arena {
    fn with_state<T>(f: impl FnOnce(&mut ArenaState) -> T) -> T {
        while ARENA_LOCK
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            std::hint::spin_loop();
        }
        // SAFETY: the lock is held: no other reference to the state exists.
        let out = f(unsafe { &mut *STATE.0.get() });
        ARENA_LOCK.store(false, Ordering::Release);
        out
    }

    /// The size class for a layout, if the arena serves it.
    fn class(layout: Layout) -> Option<usize> {
        if layout.align() > SMALLEST {
            return None;
        }
        let size = layout.size().max(SMALLEST).checked_next_power_of_two()?;
        let class = usize::try_from(
            size.trailing_zeros()
                .checked_sub(SMALLEST.trailing_zeros())?,
        )
        .ok()?;
        (class < CLASSES).then_some(class)
    }

    fn class_size(class: usize) -> usize {
        SMALLEST << class
    }

    fn base() -> *mut u8 {
        ARENA.0.get().cast::<u8>()
    }

    /// The offset of `ptr` in the arena, if it is in it.
    fn offset_of(ptr: *mut u8) -> Option<usize> {
        let offset = (ptr as usize).checked_sub(Self::base() as usize)?;
        (offset < ARENA_BYTES).then_some(offset)
    }

    /// A block of `class`: a freed one, or a new one from the untouched end.
    fn take(class: usize) -> Option<*mut u8> {
        let size = Self::class_size(class);
        Self::with_state(|state| {
            let head = *state.free.get(class)?;
            if let Some(offset) = head.checked_sub(1) {
                let block = Self::base().wrapping_add(offset);
                // SAFETY: a free block of this class, inside the arena, 16-aligned
                // and at least 16 bytes long: its first 8 bytes hold the link.
                let link = unsafe { block.cast::<usize>().read() };
                *state.free.get_mut(class)? = link;
                return Some(block);
            }
            let end = state.next.checked_add(size)?;
            if end > ARENA_BYTES {
                return None;
            }
            let block = Self::base().wrapping_add(state.next);
            state.next = end;
            Some(block)
        })
    }

    /// Gives a block of `class` at `offset` back.
    fn give(offset: usize, class: usize) {
        Self::with_state(|state| {
            let Some(head) = state.free.get_mut(class) else {
                return;
            };
            let block = Self::base().wrapping_add(offset);
            // SAFETY: the block is the caller's, inside the arena, 16-aligned and
            // at least 16 bytes long; from now on it only holds the link.
            unsafe { block.cast::<usize>().write(*head) };
            *head = offset.saturating_add(1);
        });
    }
}

// SAFETY: each block is handed to one owner at a time (the lock guards the
// free lists and the end of the arena); blocks are 16-aligned and at least
// as large as the layout asks (its size rounded up to a power of two), and a
// block freed with a smaller layout than it was allocated with (after a
// shrinking realloc) goes back as the smaller class, which it still holds.
// Everything else is the C library's malloc, used as `System` uses it.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if let Some(block) = Self::class(layout).and_then(Self::take) {
            return block;
        }
        // SAFETY: forwarded as the caller gave it.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        match Self::offset_of(ptr) {
            Some(offset) => {
                // The arena only ever serves layouts with a class.
                if let Some(class) = Self::class(layout) {
                    Self::give(offset, class);
                }
            }
            // SAFETY: not the arena's, so `System` allocated it with this layout.
            None => unsafe { System.dealloc(ptr, layout) },
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match Self::offset_of(ptr) {
            Some(_) => {
                if Self::class(layout).is_some_and(|c| new_size <= Self::class_size(c)) {
                    return ptr; // it still fits its block
                }
            }
            // SAFETY: not the arena's, so `System` allocated it with this layout.
            None => return unsafe { System.realloc(ptr, layout, new_size) },
        }
        // SAFETY: the caller guarantees `new_size` with this alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: a fresh allocation of a valid layout.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both are live, distinct allocations at least `layout.size()` long.
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size());
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

// ---------------------------------------------------------------- starting the app

/// The shell that runs a script without `#!`, as POSIX `execvp` does.
const SHELL: &CStr = c"/bin/sh";
/// Where a command without `/` is looked for when `PATH` is unset (musl's default).
pub const DEFAULT_PATH: &[u8] = b"/usr/local/bin:/bin:/usr/bin";
/// The longest path the kernel takes, its NUL included (`PATH_MAX`).
const PATH_MAX: usize = 4096;
/// The child's stack, on drainit's own (which is suspended meanwhile): the
/// child runs a few small frames and makes syscalls, nothing more.
const CHILD_STACK: usize = 32 * 1024;

unsafe extern "C" {
    /// The C runtime's environment, handed to the app as it is.
    static environ: *const *const c_char;
}

/// The app's command line, made ready before the child exists: the child
/// shares drainit's memory and may not allocate, so everything it needs is
/// laid out here first.
pub struct Program {
    /// The arguments as C strings; `argv` points into them.
    args: Vec<CString>,
    /// `[spare, argv0, ..., argvN, NULL]`: the app's argv starts at index 1; the
    /// spare slot lets a script without `#!` run as `/bin/sh script args...`.
    argv: Vec<*const c_char>,
    /// The directories to search (`PATH`) when the command has no `/`.
    search: Option<Vec<u8>>,
    /// Room for one candidate path, `dir/command\0`, written by the child.
    candidate: Vec<u8>,
    /// The environment, when not drainit's own (see `set_env`); `envp` points into it.
    env: Vec<CString>,
    envp: Vec<*const c_char>,
    /// Descriptors the child gets as stdin and as stdout and stderr (-1:
    /// drainit's own); the caller keeps them open until `start` returns.
    stdin: c_int,
    output: c_int,
}

impl Program {
    /// `Err(InvalidInput)` for an argument holding a NUL byte (which argv cannot).
    pub fn new(command: &[OsString]) -> io::Result<Program> {
        let args = command
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        let mut argv = Vec::with_capacity(args.len().saturating_add(2));
        argv.push(std::ptr::null());
        argv.extend(args.iter().map(|a| a.as_ptr()));
        argv.push(std::ptr::null());
        let file = command.first().map_or(&[][..], |f| f.as_bytes());
        let search = (!file.contains(&b'/')).then(|| {
            std::env::var_os("PATH").map_or_else(|| DEFAULT_PATH.to_vec(), OsString::into_vec)
        });
        let longest_dir = search.as_deref().map_or(0, |s| {
            s.split(|b| *b == b':').map(<[u8]>::len).max().unwrap_or(0)
        });
        // A candidate longer than the kernel takes is skipped, as execvp
        // skips it (`join` finds no room): the buffer never needs more.
        let room = longest_dir
            .saturating_add(file.len())
            .saturating_add(2)
            .min(PATH_MAX);
        Ok(Program {
            args,
            argv,
            search,
            candidate: vec![0; room],
            env: Vec::new(),
            envp: Vec::new(),
            stdin: -1,
            output: -1,
        })
    }

    /// Runs the program with exactly these `NAME=value` entries as its
    /// environment, instead of drainit's. `Err(InvalidInput)` for a NUL byte.
    pub fn set_env(&mut self, env: &[OsString]) -> io::Result<()> {
        self.env = env
            .iter()
            .map(|e| CString::new(e.as_bytes()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        self.envp = self.env.iter().map(|e| e.as_ptr()).collect();
        self.envp.push(std::ptr::null());
        Ok(())
    }

    /// Gives the child `stdin` as its standard input and `output` as its
    /// standard output and error. Both must stay open until `start` returns.
    pub fn set_stdio(&mut self, stdin: Option<c_int>, output: c_int) {
        self.stdin = stdin.unwrap_or(-1);
        self.output = output;
    }
}

/// A pipe for a child's output: the read end (non-blocking) for drainit,
/// the write end for the child; both close-on-exec and neither on 0, 1 or 2.
pub fn output_pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as c_long)?;
    let [read_end, write_end] = fds;
    // SAFETY: the kernel just returned these descriptors; nothing else owns them.
    let (read_end, write_end) = unsafe {
        (
            OwnedFd::from_raw_fd(read_end),
            OwnedFd::from_raw_fd(write_end),
        )
    };
    let (read_end, write_end) = (above_stdio(read_end)?, above_stdio(write_end)?);
    // SAFETY: fcntl on a descriptor we own, with integer arguments.
    check(unsafe { libc::fcntl(read_end.as_raw_fd(), libc::F_SETFL, libc::O_NONBLOCK) } as c_long)?;
    Ok((read_end, write_end))
}

/// How the child is to start, besides the command.
#[derive(Clone, Copy, Debug)]
pub struct ChildSetup {
    /// Lead a new process group.
    pub own_group: bool,
    /// Take the terminal's foreground for that group.
    pub terminal: bool,
    /// The mask and ignored signals to hand on.
    pub inherited: Inherited,
}

/// Why the app could not be started.
#[derive(Debug)]
pub enum StartError {
    /// Preparing or cloning failed in drainit itself.
    Clone(io::Error),
    /// The child could not take its standard descriptors.
    Stdio(io::Error),
    /// The child could not make its process group.
    Group(io::Error),
    /// No exec succeeded: the last meaningful error, as `execvp` reports it.
    Exec(io::Error),
    /// The command is not a binary and has no `#!`, and `/bin/sh` could not
    /// run it: the error that exec of `/bin/sh` gave.
    Shell(io::Error),
}

/// What the child writes to the report pipe when it cannot exec; nothing is
/// written when the exec succeeds (the pipe closes on exec).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Report {
    /// 1: setpgid, 2: exec, 3: exec of /bin/sh for a script without `#!`.
    stage: c_int,
    errno: c_int,
}

const STAGE_GROUP: c_int = 1;
const STAGE_EXEC: c_int = 2;
const STAGE_SHELL: c_int = 3;
const STAGE_STDIO: c_int = 4;

/// What the parent hands the child: pointers into a `Program` and plain values.
struct Shared {
    argv: *mut *const c_char,
    envp: *const *const c_char,
    file: *const u8,
    file_len: usize,
    /// Null: exec the command itself (it has a `/`).
    search: *const u8,
    search_len: usize,
    candidate: *mut u8,
    candidate_len: usize,
    setup: ChildSetup,
    report: c_int,
    stdin: c_int,
    output: c_int,
}

/// Starts `program` as drainit's child, the way POSIX `execvp` would run it
/// (a `PATH` search; a script without `#!` runs with `/bin/sh`), in the state
/// `setup` asks for. Returns once the child has exec'd, or with why it could not.
///
/// The child is made with `clone(CLONE_VM | CLONE_VFORK)`: it borrows drainit's
/// memory (no copy of its page tables) and drainit sleeps until the child has
/// exec'd or exited. Every catchable signal is blocked in drainit (see
/// [`take_over_signals`]), so the child starts with all of them blocked: none
/// can act in it before it sets the app's mask, just before exec. Errors come
/// back through a close-on-exec pipe (which also works where vfork is emulated
/// with fork, as under qemu-user).
pub fn start(program: &mut Program, setup: ChildSetup) -> Result<i32, StartError> {
    let mut fds: [c_int; 2] = [-1, -1];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } as c_long)
        .map_err(StartError::Clone)?;
    let [read_end, write_end] = fds;
    // SAFETY: the kernel just returned these descriptors; nothing else owns them.
    let (read_end, write_end) = unsafe {
        (
            OwnedFd::from_raw_fd(read_end),
            OwnedFd::from_raw_fd(write_end),
        )
    };
    let file = program.args.first().map_or(&[][..], |a| a.as_bytes());
    let shared = Shared {
        argv: program.argv.as_mut_ptr(),
        envp: if program.envp.is_empty() {
            // SAFETY: reading the C runtime's `environ` pointer; drainit never
            // changes its environment, so nothing writes it concurrently.
            unsafe { environ }
        } else {
            program.envp.as_ptr()
        },
        file: file.as_ptr(),
        file_len: file.len(),
        search: program
            .search
            .as_ref()
            .map_or(std::ptr::null(), |s| s.as_ptr()),
        search_len: program.search.as_ref().map_or(0, Vec::len),
        candidate: program.candidate.as_mut_ptr(),
        candidate_len: program.candidate.len(),
        setup,
        report: write_end.as_raw_fd(),
        stdin: program.stdin,
        output: program.output,
    };
    let mut stack = std::mem::MaybeUninit::<[u8; CHILD_STACK]>::uninit();
    let top = stack.as_mut_ptr().cast::<u8>().wrapping_add(CHILD_STACK);
    // SAFETY: `child` runs on `stack`, which lives in this frame; with
    // CLONE_VFORK this thread sleeps until the child has exec'd or exited, so
    // neither the stack nor `shared` (nor the `Program` it points into) is used
    // or freed meanwhile. The child only makes async-signal-safe syscalls: it
    // allocates nothing, takes no lock and does not log.
    let pid = unsafe {
        libc::clone(
            child,
            top.cast::<c_void>(),
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw const shared).cast_mut().cast::<c_void>(),
        )
    };
    drop(write_end);
    if pid < 0 {
        return Err(StartError::Clone(io::Error::last_os_error()));
    }
    let mut report = Report::default();
    let size = std::mem::size_of::<Report>();
    let n = loop {
        // SAFETY: `report` is plain old data with room for `size` bytes.
        let n = unsafe {
            libc::read(
                read_end.as_raw_fd(),
                (&raw mut report).cast::<c_void>(),
                size,
            )
        };
        if n >= 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            break n;
        }
    };
    if usize::try_from(n).ok() != Some(size) {
        // EOF: the exec succeeded (or the child died before it: the reaper
        // will tell).
        return Ok(pid);
    }
    // The child has exited or is about to: reap it, it never was the app.
    let mut status: c_int = 0;
    // SAFETY: `status` is a valid, writable int for the call.
    while unsafe { libc::waitpid(pid, &mut status, 0) } < 0
        && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted
    {}
    let error = io::Error::from_raw_os_error(report.errno);
    Err(match report.stage {
        STAGE_GROUP => StartError::Group(error),
        STAGE_SHELL => StartError::Shell(error),
        STAGE_STDIO => StartError::Stdio(error),
        _ => StartError::Exec(error),
    })
}

/// The child, between clone and exec. Only raw syscalls on data the parent
/// prepared: no allocation, no lock, no logging, no panic.
extern "C" fn child(arg: *mut c_void) -> c_int {
    // SAFETY: `arg` is the `Shared` that `start` passed, alive while the parent sleeps.
    let shared = unsafe { &*arg.cast::<Shared>().cast_const() };
    let report = child_setup_and_exec(shared);
    // SAFETY: writes `report`'s bytes to the pipe; a failure leaves the parent
    // seeing EOF, i.e. a child that died before exec, which the reaper reports.
    let _ = unsafe {
        libc::write(
            shared.report,
            (&raw const report).cast::<c_void>(),
            std::mem::size_of::<Report>(),
        )
    };
    127
}

/// Makes `from` the child's descriptor `to`, open across exec.
fn redirect(from: c_int, to: c_int) -> c_int {
    if from == to {
        // SAFETY: fcntl on a descriptor of the child's own table, integer arguments.
        unsafe { libc::fcntl(to, libc::F_SETFD, 0) }
    } else {
        // SAFETY: dup2 takes two descriptors of the child's own table.
        unsafe { libc::dup2(from, to) }
    }
}

fn errno() -> c_int {
    io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

/// Sets up the child as the app must start, then execs; returns only on failure.
fn child_setup_and_exec(shared: &Shared) -> Report {
    let setup = shared.setup;
    if setup.own_group {
        // SAFETY: setpgid takes integers.
        if unsafe { libc::setpgid(0, 0) } < 0 {
            return Report {
                stage: STAGE_GROUP,
                errno: errno(),
            };
        }
        if setup.terminal {
            // SAFETY: tcsetpgrp and getpid take integers. SIGTTOU is blocked, so a
            // background group may take the foreground; on failure the app simply
            // starts without it.
            let _ = unsafe { libc::tcsetpgrp(0, libc::getpid()) };
        }
    }
    for (from, to) in [(shared.stdin, 0), (shared.output, 1), (shared.output, 2)] {
        if from >= 0 && redirect(from, to) < 0 {
            return Report {
                stage: STAGE_STDIO,
                errno: errno(),
            };
        }
    }
    // Dispositions: the child has drainit's (CLONE_VM without CLONE_SIGHAND
    // copies the table), which are those drainit was started with, but for
    // the ignored ones drainit reset (SIGCHLD): ignore them again.
    let ignore = KernelSigaction {
        handler: libc::SIG_IGN,
        ..KernelSigaction::default()
    };
    for signal in setup.inherited.ignored.iter().filter(|s| s.catchable()) {
        let _ = sigaction(signal.number(), Some(&ignore));
    }
    // Last: from here on a signal acts as it would in the app.
    let _ = sigprocmask(libc::SIG_SETMASK, Some(setup.inherited.mask));
    exec_like_execvp(shared)
}

/// `execvp`, plus POSIX's fallback that glibc has and musl lacks: a file the
/// kernel cannot run (ENOEXEC) that is not an ELF binary runs with `/bin/sh`.
fn exec_like_execvp(shared: &Shared) -> Report {
    let exec_error = |errno| Report {
        stage: STAGE_EXEC,
        errno,
    };
    // SAFETY: the parent's `Program` holds `argv` (with at least the spare slot and
    // the NULL) and `candidate`, and the parent keeps them alive and untouched
    // while the child runs.
    let argv1 = unsafe { shared.argv.add(1) };
    if shared.search.is_null() {
        // SAFETY: argv[1] is the command itself, a NUL-terminated string (the
        // search is null only for a non-empty command).
        let path = unsafe { *argv1 };
        return match execve(path, argv1, shared.envp) {
            libc::ENOEXEC => run_with_shell(shared, path),
            e => exec_error(e),
        };
    }
    // SAFETY: pointer and length of the command's bytes and of PATH, and the
    // candidate buffer, all owned by the parent's `Program` (see above).
    let (file, search, candidate) = unsafe {
        (
            std::slice::from_raw_parts(shared.file, shared.file_len),
            std::slice::from_raw_parts(shared.search, shared.search_len),
            std::slice::from_raw_parts_mut(shared.candidate, shared.candidate_len),
        )
    };
    if file.is_empty() {
        return exec_error(libc::ENOENT);
    }
    let mut denied = false;
    for dir in search.split(|b| *b == b':') {
        // Longer than PATH_MAX: no exec could take it; the next one may do.
        let Some(path) = join(candidate, dir, file) else {
            continue;
        };
        match execve(path, argv1, shared.envp) {
            libc::EACCES => denied = true,
            // Not here (or not reachable, or a name in it too long for the
            // kernel): try the next directory, as execvp does.
            libc::ENOENT
            | libc::ENOTDIR
            | libc::ESTALE
            | libc::ENODEV
            | libc::ETIMEDOUT
            | libc::ENAMETOOLONG => {}
            libc::ENOEXEC => return run_with_shell(shared, path),
            e => return exec_error(e),
        }
    }
    exec_error(if denied { libc::EACCES } else { libc::ENOENT })
}

/// Writes `dir/file\0` (or `file\0` for an empty `dir`: the current
/// directory) into `buf`; `None` if it does not fit.
fn join(buf: &mut [u8], dir: &[u8], file: &[u8]) -> Option<*const c_char> {
    let slash = usize::from(!dir.is_empty());
    let file_at = dir.len().checked_add(slash)?;
    let end = file_at.checked_add(file.len())?;
    buf.get_mut(..dir.len())?.copy_from_slice(dir);
    if slash == 1 {
        *buf.get_mut(dir.len())? = b'/';
    }
    buf.get_mut(file_at..end)?.copy_from_slice(file);
    *buf.get_mut(end)? = 0;
    Some(buf.as_ptr().cast())
}

/// `execve`; returns the errno it failed with.
fn execve(path: *const c_char, argv: *const *const c_char, envp: *const *const c_char) -> c_int {
    // SAFETY: `path` is NUL-terminated, `argv` and `envp` are NULL-terminated
    // arrays of NUL-terminated strings, all alive for the call.
    unsafe { libc::execve(path, argv, envp) };
    errno()
}

/// A file the kernel would not run: unless it is an ELF binary (of another
/// machine, say), run it as `/bin/sh path args...`, as POSIX `execvp` does.
fn run_with_shell(shared: &Shared, path: *const c_char) -> Report {
    if is_elf(path) {
        return Report {
            stage: STAGE_EXEC,
            errno: libc::ENOEXEC,
        };
    }
    // SAFETY: slots 0 and 1 of the parent's argv exist (the spare and argv0); the
    // exec that used them failed, so they can be rewritten: /bin/sh, the script,
    // then the app's arguments.
    unsafe {
        *shared.argv = SHELL.as_ptr();
        *shared.argv.add(1) = path;
    }
    Report {
        stage: STAGE_SHELL,
        errno: execve(SHELL.as_ptr(), shared.argv, shared.envp),
    }
}

/// Whether the file starts with the ELF magic number.
fn is_elf(path: *const c_char) -> bool {
    // SAFETY: `path` is a NUL-terminated string; open and read take plain values,
    // and `magic` has room for the 4 bytes read; the descriptor is closed here.
    unsafe {
        let fd = libc::open(path, libc::O_RDONLY | libc::O_CLOEXEC | libc::O_NOCTTY);
        if fd < 0 {
            return false;
        }
        let mut magic = [0u8; 4];
        let n = libc::read(fd, magic.as_mut_ptr().cast::<c_void>(), magic.len());
        libc::close(fd);
        n == 4 && magic == *b"\x7fELF"
    }
}

// ---------------------------------------------------------------- job control

/// Whether drainit runs as a job of a job-control shell: it leads a process
/// group of its own, and its parent is in another group of the same session
/// (then the parent can see drainit stop and continue it).
pub fn is_shell_job() -> bool {
    // SAFETY: these only read process ids; getpgid/getsid of the parent fail
    // harmlessly (-1) if it is gone or outside drainit's PID namespace.
    unsafe {
        let parent = libc::getppid();
        let group = libc::getpgrp();
        parent > 0
            && group == libc::getpid()
            && libc::getpgid(parent) != group
            && libc::getsid(parent) == libc::getsid(0)
    }
}

/// The foreground process group of drainit's controlling terminal, found
/// through whichever of fds 0-2 is that terminal; `None` without one (no
/// terminal, or a terminal that is not drainit's controlling one).
pub fn terminal_foreground() -> Option<i32> {
    (0..3).find_map(|fd| {
        // SAFETY: tcgetpgrp takes an integer and only reads terminal state.
        let group = unsafe { libc::tcgetpgrp(fd) };
        (group > 0).then_some(group)
    })
}

/// drainit's process group.
pub fn pgrp() -> i32 {
    // SAFETY: getpgrp cannot fail and has no side effects.
    unsafe { libc::getpgrp() }
}

/// Stops drainit itself (SIGSTOP), as a job does; returns once continued.
pub fn stop_self() {
    // SAFETY: kill(2) with drainit's own pid and a plain signal number.
    let _ = unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
}

/// Gives the terminal's foreground to process group `pgid`.
pub fn give_terminal(pgid: i32) -> io::Result<()> {
    // SAFETY: tcsetpgrp takes integers; SIGTTOU is blocked in drainit.
    check(unsafe { libc::tcsetpgrp(0, pgid) } as c_long).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mapped_stack_runs_deep_frames_and_its_guard_is_below() {
        fn depth(n: u32) -> u32 {
            // ~1 KiB a frame, kept by black_box.
            let frame = std::hint::black_box([n as u8; 1024]);
            if n == 0 {
                u32::from(frame[0])
            } else {
                depth(n - 1) + u32::from(frame[1] > 0)
            }
        }
        let stack = MappedStack::new(OWN_STACK_BYTES).unwrap();
        let (low, high) = (stack.base as usize, stack.base as usize + stack.len);
        let here = || {
            let local = 0u8;
            let at = std::hint::black_box(&local) as *const u8 as usize;
            // 64 KiB of frames at least: more than `ulimit -s 48` gives.
            let deep = depth(64);
            i32::from((low + PAGE..high).contains(&at)) * 1000 + deep as i32
        };
        assert_eq!(stack.run(here), 1064);
        // At an ordinary limit (the test's), nothing is mapped: it runs here.
        assert_eq!(on_a_stack_that_fits(here).unwrap(), 64);
    }

    #[test]
    fn size_classes_round_up_to_powers_of_two() {
        let class = |size, align| Arena::class(Layout::from_size_align(size, align).unwrap());
        assert_eq!(class(0, 1), Some(0));
        assert_eq!(class(16, 8), Some(0));
        assert_eq!(class(17, 8), Some(1));
        assert_eq!(class(640, 8), Some(6)); // 1024
        assert_eq!(class(64 * 1024, 16), Some(CLASSES - 1));
        assert_eq!(class(64 * 1024 + 1, 16), None);
        assert_eq!(class(8, 32), None); // over-aligned: malloc's
        assert_eq!(Arena::class_size(6), 1024);
    }

    #[test]
    fn the_allocator_keeps_every_byte_across_threads_sizes_and_reallocs() {
        // Through the GlobalAlloc interface, from several threads at once: each
        // block gets a pattern, grows or shrinks, and must keep it.
        let workers: Vec<_> = (0..4u8)
            .map(|t| {
                std::thread::spawn(move || {
                    let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
                    let mut from_arena = 0;
                    for i in 0..2000usize {
                        let size = [1, 15, 16, 17, 100, 640, 3000, 20_000, 70_000][i % 9];
                        let align = [1, 8, 16][i % 3];
                        let layout = Layout::from_size_align(size, align).unwrap();
                        // SAFETY: a valid, non-zero layout.
                        let p = unsafe { ALLOCATOR.alloc(layout) };
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0);
                        from_arena += usize::from(Arena::offset_of(p).is_some());
                        let mark = t.wrapping_mul(31).wrapping_add(i as u8);
                        // SAFETY: `p` is a fresh block of `size` bytes.
                        unsafe { std::ptr::write_bytes(p, mark, size) };
                        live.push((p, layout, mark));
                        if i % 3 == 0 {
                            let (p, layout, mark) = live.swap_remove(i % live.len());
                            let new_size = if i % 2 == 0 {
                                layout.size() * 2
                            } else {
                                layout.size() / 2 + 1
                            };
                            // SAFETY: `p` was allocated with `layout`; new_size > 0.
                            let q = unsafe { ALLOCATOR.realloc(p, layout, new_size) };
                            assert!(!q.is_null());
                            let kept = layout.size().min(new_size);
                            // SAFETY: `q` holds at least `kept` initialised bytes.
                            let bytes = unsafe { std::slice::from_raw_parts(q, kept) };
                            assert!(bytes.iter().all(|b| *b == mark), "realloc lost bytes");
                            // SAFETY: `q` is `new_size` bytes long.
                            unsafe { std::ptr::write_bytes(q, mark, new_size) };
                            let layout = Layout::from_size_align(new_size, layout.align()).unwrap();
                            live.push((q, layout, mark));
                        }
                        if i % 5 == 0 && live.len() > 8 {
                            let (p, layout, mark) = live.remove(0);
                            // SAFETY: `p` holds `layout.size()` bytes written above.
                            let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
                            assert!(bytes.iter().all(|b| *b == mark), "a block was overwritten");
                            // SAFETY: allocated with this layout.
                            unsafe { ALLOCATOR.dealloc(p, layout) };
                        }
                    }
                    for (p, layout, mark) in live {
                        // SAFETY: as above.
                        let bytes = unsafe { std::slice::from_raw_parts(p, layout.size()) };
                        assert!(bytes.iter().all(|b| *b == mark), "a block was overwritten");
                        // SAFETY: allocated with this layout.
                        unsafe { ALLOCATOR.dealloc(p, layout) };
                    }
                    from_arena
                })
            })
            .collect();
        let from_arena: usize = workers.into_iter().map(|w| w.join().unwrap()).sum();
        // (How many depends on what the test harness holds of the arena meanwhile.)
        assert!(from_arena > 100, "the arena served {from_arena} blocks");
    }
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

// ---------------------------------------------------------------- drainit's own output

/// What a descriptor is, as far as writing to it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FdKind {
    /// A pipe or a FIFO: a reader that stops reading stalls a blocking write.
    Pipe,
    /// A terminal: output stopped (Ctrl-S) stalls a blocking write.
    Terminal,
    Socket,
    /// A regular file, a device that is not a terminal, anything else: a
    /// write takes what it is given.
    Other,
}

/// What `fd` is, with its device and inode; `None` if it is not open.
pub fn fd_kind(fd: c_int) -> Option<(FdKind, u64, u64)> {
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` has room for a `struct stat`, which fstat fills on success.
    if unsafe { libc::fstat(fd, st.as_mut_ptr()) } < 0 {
        return None;
    }
    // SAFETY: fstat succeeded, so the struct is filled.
    let st = unsafe { st.assume_init() };
    let kind = match st.st_mode & libc::S_IFMT {
        libc::S_IFIFO => FdKind::Pipe,
        libc::S_IFSOCK => FdKind::Socket,
        // SAFETY: isatty takes an integer and only asks the kernel.
        libc::S_IFCHR if unsafe { libc::isatty(fd) } == 1 => FdKind::Terminal,
        _ => FdKind::Other,
    };
    #[allow(clippy::useless_conversion)] // u64 on x86_64, not on every target
    Some((kind, u64::from(st.st_dev), u64::from(st.st_ino)))
}

/// One `write` of `buf` to `fd` that never waits for the reader:
/// `pwritev2(RWF_NOWAIT)`, which leaves the flags of the descriptor (shared
/// with the app) as they are. `EAGAIN`: no room now. `EOPNOTSUPP` (or
/// `EINVAL`/`ENOSYS` on old kernels): not for this kind of file.
pub fn write_nowait(fd: c_int, buf: &[u8]) -> io::Result<usize> {
    let iov = libc::iovec {
        iov_base: buf.as_ptr().cast_mut().cast::<c_void>(),
        iov_len: buf.len(),
    };
    // SAFETY: one iovec over `buf`, which outlives the call and is only read;
    // offset -1 (low and high halves) writes at the file's position, as write(2).
    let ret = unsafe {
        libc::syscall(
            libc::SYS_pwritev2,
            fd,
            &iov as *const libc::iovec,
            1 as c_long,
            -1 as c_long,
            -1 as c_long,
            libc::RWF_NOWAIT,
        )
    };
    check(ret).map(|n| usize::try_from(n).unwrap_or(0))
}

/// `send(MSG_DONTWAIT | MSG_NOSIGNAL)`: one write to a socket that never
/// waits and never raises SIGPIPE.
pub fn send_nowait(fd: c_int, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` outlives the call and is only read.
    let ret = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast::<c_void>(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    check(ret as c_long).map(|n| usize::try_from(n).unwrap_or(0))
}

/// A plain `write(2)` to `fd` (which may block).
pub fn write_fd(fd: c_int, buf: &[u8]) -> io::Result<usize> {
    // SAFETY: `buf` outlives the call and is only read.
    let ret = unsafe { libc::write(fd, buf.as_ptr().cast::<c_void>(), buf.len()) };
    check(ret as c_long).map(|n| usize::try_from(n).unwrap_or(0))
}

/// Makes sure descriptors 0, 1 and 2 are open, before drainit opens any of
/// its own: started with one closed, drainit's first socket would land
/// there, and its log lines (or the health check's answer) would go to a
/// network peer. Each closed one gets `/dev/null` (read-write, inherited by
/// the app, as Rust's runtime and glibc for set-uid programs do). Where
/// `/dev/null` cannot be opened or is not the null device, an `O_PATH`
/// descriptor of `/` holds the place instead (reads and writes on it fail,
/// as on a closed one), close-on-exec, so the app gets the slot closed as
/// drainit did. Nothing here can fail drainit.
pub fn occupy_stdio() {
    for fd in 0..=2 {
        // SAFETY: F_GETFD takes and returns integers; -1 means `fd` is not open.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        let placeholder = open_null().or_else(|| {
            // SAFETY: a NUL-terminated literal path and integer flags.
            let p = unsafe { libc::open(c"/".as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
            (p >= 0).then_some(p)
        });
        let Some(new) = placeholder else { continue };
        if new != fd {
            // The lower ones are open, so `open` returns `fd` itself; should it
            // not, move it there. dup2 clears close-on-exec: keep the flag.
            // SAFETY: fcntl and dup2 on descriptors drainit owns; `new` is closed
            // once duplicated.
            unsafe {
                let flags = libc::fcntl(new, libc::F_GETFD);
                if libc::dup2(new, fd) == fd && flags >= 0 {
                    libc::fcntl(fd, libc::F_SETFD, flags);
                }
                libc::close(new);
            }
        }
    }
}

/// `/dev/null`, opened read-write and inheritable, if it is the null device.
fn open_null() -> Option<c_int> {
    // SAFETY: a NUL-terminated literal path and integer flags; O_NONBLOCK keeps
    // the open from waiting should a FIFO sit there (it is dropped below).
    let fd = unsafe {
        libc::open(
            c"/dev/null".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_NONBLOCK | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return None;
    }
    let mut st = std::mem::MaybeUninit::<libc::stat>::uninit();
    // SAFETY: `st` has room for a `struct stat`; it is read only if fstat filled it.
    let null = unsafe {
        libc::fstat(fd, st.as_mut_ptr()) == 0 && {
            let st = st.assume_init();
            st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == libc::makedev(1, 3)
        }
    };
    // SAFETY: fcntl and close on the descriptor just opened.
    unsafe {
        if null {
            // The null device ignores O_NONBLOCK, but the app should not see it.
            let flags = libc::fcntl(fd, libc::F_GETFL);
            if flags >= 0 {
                libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK);
            }
            return Some(fd);
        }
        libc::close(fd);
    }
    None
}
