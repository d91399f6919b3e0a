//! Starting the app: its own process group (unless `--no-group`), the
//! terminal's foreground when drainit holds it, exactly the signal state
//! drainit was started with, and none of drainit's descriptors (all of them
//! are close-on-exec).

use std::os::unix::process::CommandExt;
use std::process::Command;

use crate::cli::Launch;
use crate::error::Error;
use crate::sys;

/// The running app.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct App {
    pub pid: i32,
    /// Whether the app leads a process group of its own (its pgid is its pid).
    pub own_group: bool,
}

pub fn spawn(launch: &Launch, inherited: sys::Inherited) -> Result<App, Error> {
    let Some((program, args)) = launch.command.split_first() else {
        return Err(Error::Usage("missing COMMAND".into()));
    };
    let mut command = Command::new(program);
    command.args(args);
    let take_terminal = launch.group && sys::holds_terminal_foreground();
    if launch.group {
        command.process_group(0);
    }
    sys::prepare_child(&mut command, inherited, take_terminal);
    // std returns only once the child has exec'd (or failed to), so its
    // process group exists before the first signal can be forwarded to it.
    let child = command.spawn().map_err(|source| Error::Spawn {
        command: program.clone(),
        source,
    })?;
    // Linux pids are at most 2^22 (pid_max), so they fit an i32.
    let pid = child.id() as i32;
    Ok(App {
        pid,
        own_group: launch.group,
    })
}
