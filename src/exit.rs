//! The exit-code contract, as pure functions.
//!
//! | what happened                          | drainit exits |
//! |----------------------------------------|---------------|
//! | the app exited with code n             | n             |
//! | the app was killed by signal n         | 128 + n       |
//! | the command cannot be executed         | 126           |
//! | the command was not found              | 127           |
//! | drainit's own failure or a usage error | 125           |

use std::io;

pub const OWN_ERROR: i32 = 125;
pub const NOT_EXECUTABLE: i32 = 126;
pub const NOT_FOUND: i32 = 127;

/// How a child ended, as `waitpid` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Exited(i32),
    Signaled(i32),
}

impl Status {
    /// The code a shell would give: n, or 128 + n for a signal.
    pub fn code(self) -> i32 {
        match self {
            Status::Exited(n) => n,
            Status::Signaled(n) => n.saturating_add(128),
        }
    }
}

/// The exit code for a command that could not be started.
pub fn for_spawn_error(err: &io::Error) -> i32 {
    match err.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENOTDIR) => NOT_FOUND,
        Some(
            libc::EACCES | libc::EPERM | libc::ENOEXEC | libc::EISDIR | libc::ETXTBSY | libc::ELOOP,
        ) => NOT_EXECUTABLE,
        _ => OWN_ERROR,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_shell_convention() {
        assert_eq!(Status::Exited(0).code(), 0);
        assert_eq!(Status::Exited(3).code(), 3);
        assert_eq!(Status::Exited(255).code(), 255);
        assert_eq!(Status::Signaled(15).code(), 143);
        assert_eq!(Status::Signaled(9).code(), 137);
    }

    #[test]
    fn spawn_errors_map_to_126_and_127() {
        let e = io::Error::from_raw_os_error;
        assert_eq!(for_spawn_error(&e(libc::ENOENT)), 127);
        assert_eq!(for_spawn_error(&e(libc::ENOTDIR)), 127);
        assert_eq!(for_spawn_error(&e(libc::EACCES)), 126);
        assert_eq!(for_spawn_error(&e(libc::ENOEXEC)), 126);
        assert_eq!(for_spawn_error(&e(libc::EISDIR)), 126);
        assert_eq!(for_spawn_error(&e(libc::ENOMEM)), 125);
    }
}
