//! The imperative loop: sleep on the signalfd until a signal arrives or the
//! next deadline is due, read every pending signal, reap every exited child,
//! feed the events to the drain machine, and carry out what it says.
//!
//! Nothing here returns an error once the app is running: a failure is logged
//! and the loop goes on, because a PID 1 that gives up takes the container
//! down with no drain.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, error, info, warn};

use crate::cli::{Launch, show_command};
use crate::drain::{Action, Event, Machine, StopReason};
use crate::exit::Status;
use crate::procfs;
use crate::signals::{SigSet, Signal};
use crate::spawn::{self, App};
use crate::sys::{self, Inherited, SignalFd, Target};
use crate::time::{format_duration, rfc3339, since};

pub fn supervise(launch: &Launch, inherited: Inherited) -> i32 {
    let pid1 = sys::pid() == 1;
    if !pid1 {
        if let Err(e) = sys::become_subreaper() {
            warn!("cannot become a child subreaper ({e}): orphans will not be reaped by drainit");
        }
    }
    if let Some(path) = &launch.drain_file {
        remove_stale_drain_file(path);
    }
    let signals = match SignalFd::new(SigSet::catchable()) {
        Ok(fd) => fd,
        Err(source) => {
            let e = crate::error::Error::Setup {
                what: "create a signalfd",
                source,
            };
            error!("{e}");
            return e.exit_code();
        }
    };
    let app = match spawn::spawn(launch, inherited) {
        Ok(app) => app,
        Err(e) => {
            error!("{e}");
            return e.exit_code();
        }
    };
    debug!(
        "started '{}' as pid {}{}; drainit is {}",
        show_command(&launch.command),
        app.pid,
        if app.own_group {
            " in a process group of its own"
        } else {
            ""
        },
        if pid1 { "PID 1" } else { "a child subreaper" }
    );
    Supervisor {
        launch,
        app,
        pid1,
        self_pid: sys::pid(),
        app_alive: true,
        started: Instant::now(),
        machine: Machine::new(launch.policy.clone()),
    }
    .supervise(&signals)
}

struct Supervisor<'a> {
    launch: &'a Launch,
    app: App,
    pid1: bool,
    self_pid: i32,
    app_alive: bool,
    started: Instant,
    machine: Machine,
}

impl Supervisor<'_> {
    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    fn supervise(mut self, signals: &SignalFd) -> i32 {
        let mut received = Vec::with_capacity(16);
        let mut events = Vec::with_capacity(16);
        loop {
            let timeout = self
                .machine
                .next_deadline()
                .map(|due| due.saturating_sub(self.now()));
            if let Err(e) = signals.wait(timeout) {
                error!("poll failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            received.clear();
            if let Err(e) = signals.read_all(&mut received) {
                error!("cannot read signals: {e}");
            }
            events.clear();
            for r in &received {
                let Some(signal) = Signal::new(r.signal) else {
                    continue;
                };
                if signal == Signal::CHLD {
                    continue;
                }
                if i64::from(r.sender) == i64::from(self.self_pid) {
                    // Raised by drainit's own doing (a write to a closed pipe, say): not the app's business.
                    debug!("ignoring {signal} raised by drainit itself");
                    continue;
                }
                events.push(Event::Signal(signal));
            }
            while let Some((pid, status)) = sys::reap_one() {
                if pid == self.app.pid && self.app_alive {
                    self.app_alive = false;
                    info!("the app {}", describe(status));
                    events.push(Event::AppExited(status.code()));
                } else {
                    debug!("reaped pid {pid} ({})", describe(status));
                }
            }
            self.app.job_control(&received, self.app_alive);
            let now = self.now();
            for event in events.drain(..) {
                if let Some(code) = self.feed(event, now) {
                    return code;
                }
            }
            if self.machine.next_deadline().is_some_and(|due| now >= due) {
                if let Some(code) = self.feed(Event::Deadline, now) {
                    return code;
                }
            }
            if self.machine.awaiting_leftovers() && !self.leftovers_alive() {
                if let Some(code) = self.feed(Event::LeftoversGone, now) {
                    return code;
                }
            }
        }
    }

    /// Steps the machine and carries out its actions; `Some(code)`: exit with it.
    fn feed(&mut self, event: Event, now: Duration) -> Option<i32> {
        self.machine
            .step(event, now)
            .into_iter()
            .find_map(|action| self.carry_out(action))
    }

    /// Where signals for the app go now: its group, or its pid while it lives.
    fn app_target(&self) -> Option<Target> {
        if self.app.own_group {
            Some(Target::Group(self.app.pid))
        } else if self.app_alive {
            Some(Target::Pid(self.app.pid))
        } else {
            // Its pid may already belong to someone else.
            None
        }
    }

    fn signal(&self, target: Target, signal: Signal) {
        if let Err(e) = sys::send(target, signal.number()) {
            warn!("cannot send {signal} to {}: {e}", describe_target(target));
        }
    }

    /// "t+5.0s: " while a drain runs.
    fn stamp(&self) -> String {
        self.machine
            .drain_start()
            .map(|start| format!("{}: ", since(self.now().saturating_sub(start))))
            .unwrap_or_default()
    }

    fn carry_out(&mut self, action: Action) -> Option<i32> {
        match action {
            Action::Forward(signal) => match self.app_target() {
                Some(target) => {
                    self.signal(target, signal);
                    debug!("forwarded {signal} to {}", describe_target(target));
                }
                None => debug!("{signal} not forwarded: the app has exited"),
            },
            Action::Swallow(signal) => {
                info!(
                    "{}{signal} again: the app already has its stop signal; not sending another",
                    self.stamp()
                )
            }
            Action::StartDrain(signal) => self.start_drain(signal),
            Action::Stop(signal, reason) => self.stop(signal, reason),
            Action::TermLeftovers {
                code: _,
                spare_group,
            } => self.term_leftovers(spare_group),
            Action::Kill { app_alive } => self.kill(app_alive),
            Action::Exit(code) => {
                debug!("exiting with code {code}");
                return Some(code);
            }
        }
        None
    }

    fn start_drain(&self, signal: Signal) {
        let delay = self
            .launch
            .policy
            .drain
            .as_ref()
            .map_or(Duration::ZERO, |d| d.delay);
        let file = match &self.launch.drain_file {
            Some(path) => match write_drain_file(path, signal) {
                Ok(()) => format!("; drain file {} written", crate::text::path(path)),
                Err(e) => {
                    warn!(
                        "cannot write drain file {}: {e}; draining anyway",
                        crate::text::path(path)
                    );
                    String::new()
                }
            },
            None => String::new(),
        };
        let serving = if delay.is_zero() {
            String::new()
        } else {
            format!("; the app keeps serving for {}", format_duration(delay))
        };
        info!(
            "{}{signal} received: drain started{file}{serving}",
            self.stamp()
        );
    }

    fn stop(&self, signal: Signal, reason: StopReason) {
        let Some(target) = self.app_target() else {
            return;
        };
        self.signal(target, signal);
        if signal != Signal::CONT && signal != Signal::KILL {
            // A stopped process acts on its stop signal only once continued.
            self.signal(target, Signal::CONT);
        }
        let to = describe_target(target);
        let kill = self
            .machine
            .next_deadline()
            .zip(self.machine.drain_start())
            .map(|(due, start)| format!("; SIGKILL at {}", since(due.saturating_sub(start))))
            .unwrap_or_default();
        match reason {
            StopReason::Forwarded => info!("forwarded {signal} to {to}"),
            StopReason::DelayOver => info!("{}sending {signal} to {to}{kill}", self.stamp()),
            StopReason::CutShort(by) => {
                info!(
                    "{}{by} received: drain delay cut short; sending {signal} to {to}{kill}",
                    self.stamp()
                )
            }
        }
    }

    /// The app has exited: SIGTERM (and SIGCONT) to what it left behind, unless
    /// they already had a stop signal; they get the grace period to finish.
    fn term_leftovers(&self, spare_group: bool) {
        if !self.leftovers_alive() {
            return;
        }
        let targets: Vec<Target> = match (self.pid1, self.app.own_group, spare_group) {
            (true, true, true) => match procfs::pids_outside_group(self.app.pid) {
                Some(pids) => pids.into_iter().map(Target::Pid).collect(),
                None => {
                    // Without a /proc of this namespace the app's group cannot be
                    // told from the rest, and a second SIGTERM must not reach it:
                    // the rest gets only the SIGKILL after the grace period.
                    warn!(
                        "/proc is not this PID namespace's: cannot tell the app's group from the rest; no SIGTERM to what the app left outside its group"
                    );
                    vec![]
                }
            },
            (true, _, _) => vec![Target::All],
            (false, true, false) => vec![Target::Group(self.app.pid)],
            (false, _, _) => vec![],
        };
        for target in &targets {
            self.signal(*target, Signal::TERM);
            self.signal(*target, Signal::CONT);
        }
        // To the tenth of a second: "5s", not "4.999s".
        let grace = self.machine.next_deadline().map(|due| {
            let tenths = (due.saturating_sub(self.now()).as_millis() + 50) / 100;
            format_duration(Duration::from_millis(tenths as u64 * 100))
        });
        let told = match (targets.is_empty(), spare_group) {
            (true, _) => "they already had a stop signal",
            (false, true) => "sent SIGTERM to those that had no stop signal yet",
            (false, false) => "sent them SIGTERM",
        };
        info!(
            "{}the app left processes behind; {told}; waiting up to {} before SIGKILL",
            self.stamp(),
            grace.unwrap_or_default()
        );
    }

    fn kill(&self, app_alive: bool) {
        let target = if self.pid1 {
            Some(Target::All)
        } else {
            self.app_target()
        };
        let Some(target) = target else { return };
        self.signal(target, Signal::KILL);
        let what = if self.pid1 {
            "everything left in the container".to_string()
        } else {
            describe_target(target)
        };
        if app_alive {
            warn!(
                "{}kill deadline reached: SIGKILL to {what}; exiting 137",
                self.stamp()
            );
        } else {
            warn!("{}grace period over: SIGKILL to {what}", self.stamp());
        }
    }

    /// Whether anything drainit waits for after the app is still alive: as
    /// PID 1, any process in the namespace; otherwise, the app's group.
    fn leftovers_alive(&self) -> bool {
        if self.pid1 {
            sys::anyone_in(Target::All)
        } else if self.app.own_group {
            sys::anyone_in(Target::Group(self.app.pid))
        } else {
            false
        }
    }
}

fn describe(status: Status) -> String {
    match status {
        Status::Exited(code) => format!("exited with code {code}"),
        Status::Signaled(n) => match Signal::new(n) {
            Some(s) => format!("was killed by {s} (code {})", status.code()),
            None => format!("was killed by signal {n} (code {})", status.code()),
        },
    }
}

fn describe_target(target: Target) -> String {
    match target {
        Target::Pid(p) => format!("the app (pid {p})"),
        Target::Group(g) => format!("the app's process group ({g})"),
        Target::All => "every process left".to_string(),
    }
}

fn remove_stale_drain_file(path: &Path) {
    match std::fs::remove_file(path) {
        Ok(()) => info!("removed stale drain file {}", crate::text::path(path)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => warn!(
            "cannot remove stale drain file {}: {e}",
            crate::text::path(path)
        ),
    }
}

fn write_drain_file(path: &Path, signal: Signal) -> std::io::Result<()> {
    std::fs::write(
        path,
        format!("signal={signal}\ntime={}\n", rfc3339(SystemTime::now())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_exits() {
        assert_eq!(describe(Status::Exited(3)), "exited with code 3");
        assert_eq!(
            describe(Status::Signaled(15)),
            "was killed by SIGTERM (code 143)"
        );
    }
}
