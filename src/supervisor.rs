//! The imperative loop: sleep on the signalfd until a signal arrives or the
//! next deadline is due, read the pending signals (up to 16 a wake; the rest
//! wake the next turn at once), reap every exited child, feed the events to
//! the drain machine, and carry out what it says.
//!
//! The hot path: a signal the machine would only pass on (`passes_through`)
//! is forwarded straight after the read; a wake with nothing else to do then
//! ends there, so a forwarded signal costs a `read` and a `kill`.
//!
//! While a drain action runs (`actions.rs`), the wait also watches its
//! output pipe, each wake reads what it wrote and keeps its deadline, and
//! the reaping tells its exit from the app's by its pid; with none running,
//! none of this costs anything.
//!
//! During an adaptive drain (`--drain-quiet`) the machine's deadlines include
//! a sample every 100 ms, taken here (`traffic::Sampler`) in the loop itself,
//! bounded in time; outside a drain nothing is sampled.
//!
//! Nothing here returns an error once the app is running: a failure is logged
//! and the loop goes on, because a PID 1 that gives up takes the container
//! down with no drain.

use std::time::{Duration, Instant};

use log::{debug, error, info, warn};

use crate::actions::{Reaped, Runner};
use crate::cli::{Launch, show_command};
use crate::drain::{Action, Event, Machine, StopReason};
use crate::drainfile::DrainFile;
use crate::error::Reason;
use crate::exit::Status;
use crate::listener::{self, Listener};
use crate::output;
use crate::procfs;
use crate::signals::{SigSet, Signal};
use crate::spawn::{self, App};
use crate::sys::{self, ChildChange, Inherited, SignalFd, Target};
use crate::time::{format_duration, since};

pub fn supervise(launch: &Launch, inherited: Inherited) -> i32 {
    let pid1 = sys::pid() == 1;
    if !pid1 && let Err(e) = sys::become_subreaper() {
        warn!(
            "cannot become a child subreaper ({}): orphans will not be reaped by drainit",
            Reason(&e)
        );
    }
    // A drain action that cannot run is found out now, not at the drain.
    for command in [&launch.actions.on_drain, &launch.actions.stop_command]
        .into_iter()
        .flatten()
    {
        if let Err(e) = command.check() {
            // Refusals and start-up errors are written whatever the log level.
            output::refuse(&e);
            return e.exit_code();
        }
    }
    let drain_file = match launch.drain_file.as_deref().map(DrainFile::open) {
        Some(Ok(file)) => Some(file),
        Some(Err(e)) => {
            output::refuse(&e);
            return e.exit_code();
        }
        None => None,
    };
    let signals = match SignalFd::new(SigSet::catchable()) {
        Ok(fd) => fd,
        Err(source) => {
            let e = crate::error::Error::Setup {
                what: "create a signalfd",
                source,
            };
            output::refuse(&e);
            return e.exit_code();
        }
    };
    // Bound and started before the app: a port in use, or no thread or
    // memory for the listener, is drainit's error, not a container that runs
    // without the probes it was promised.
    let health = match &launch.listen {
        Some(listen) => match start_listener(listen) {
            Ok(status) => Some(status),
            Err(code) => return code,
        },
        None => None,
    };
    if crate::preflight::wants_start_line(launch) {
        info!("{}", crate::preflight::start_line(launch));
    }
    let actions = Runner::new(&launch.actions, inherited);
    let app = match spawn::spawn(launch, inherited) {
        Ok(app) => app,
        Err(e) => {
            output::refuse(&e);
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
    if let Some(health) = &health {
        health.serve();
    }
    Supervisor {
        health,
        launch,
        drain_file,
        app,
        pid1,
        self_pid: sys::pid(),
        app_alive: true,
        children_changed: true,
        started: Instant::now(),
        machine: Machine::new(&launch.policy),
        actions,
        sampler: None,
        drain_signal: None,
    }
    .supervise(&signals)
}

/// Binds the health listener and takes all it needs; `Err`: the exit code,
/// once the reason is logged.
fn start_listener(listen: &crate::cli::Listen) -> Result<listener::Status, i32> {
    let started = Listener::bind(listen.address, listen.app_health.clone())
        .map_err(|e| ("cannot listen there", e))
        .and_then(|listener| {
            listener
                .start()
                .map_err(|e| ("cannot start the health listener", e))
        });
    started.map_err(|(what, e)| {
        let e = crate::error::Error::Usage(format!(
            "--health-listen {}: {what}: {}",
            listen.address,
            crate::error::os_reason(&e)
        ));
        output::refuse(&e);
        e.exit_code()
    })
}

struct Supervisor<'a> {
    /// What the health listener answers, when there is one.
    health: Option<listener::Status>,
    launch: &'a Launch,
    /// `--drain-file`, its directory pinned at start.
    drain_file: Option<DrainFile>,
    app: App,
    pid1: bool,
    self_pid: i32,
    app_alive: bool,
    /// A child may have exited since the last `waitpid` that found none
    /// (true at start: nothing has been looked at yet).
    children_changed: bool,
    started: Instant,
    machine: Machine<'a>,
    /// `--on-drain`, `--stop-command`, `--on-drain-post`, while they run.
    actions: Runner<'a>,
    /// The adaptive drain's view of the app's sockets, once a drain has started.
    sampler: Option<crate::traffic::Sampler>,
    /// The signal that started the drain, for a later announcement.
    drain_signal: Option<Signal>,
}

impl Supervisor<'_> {
    /// The drain's settings, when there is a drain.
    fn drain(&self) -> Option<&crate::drain::Drain> {
        self.launch.policy.drain.as_ref()
    }

    /// The adaptive drain's settings (`--drain-quiet`), when it is on.
    fn adaptive(&self) -> Option<&crate::drain::Adaptive> {
        self.drain().and_then(|d| d.adaptive.as_deref())
    }

    fn now(&self) -> Duration {
        self.started.elapsed()
    }

    /// The next time the loop must wake: the machine's, or the drain actions'.
    fn next_deadline(&self) -> Option<Duration> {
        [self.machine.next_deadline(), self.actions.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    fn supervise(mut self, signals: &SignalFd) -> i32 {
        let mut received = sys::Batch::new();
        let mut events = Vec::with_capacity(16);
        // Changes only when the machine steps or a drain action runs: kept
        // here, the hot path below reads nothing it has not just touched.
        let mut deadline = self.next_deadline();
        loop {
            // A storm of repeated warnings also wakes the loop once it is over,
            // to say how many there were.
            let timeout = output::sooner(deadline.map(|due| due.saturating_sub(self.now())));
            // Only while a drain action runs does the wait watch its output too.
            let waited = if self.actions.active() {
                signals.wait_also(&self.actions.fds(), timeout)
            } else {
                signals.wait(timeout)
            };
            if let Err(e) = waited {
                error!(target: output::STORM, "poll failed: {}", Reason(&e));
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Err(e) = signals.read(&mut received) {
                error!(target: output::STORM, "cannot read signals: {}", Reason(&e));
            }
            output::storms_over();
            events.clear();
            for r in received.as_slice() {
                let Some(signal) = self.sent_by_others(r) else {
                    continue;
                };
                if events.is_empty()
                    && self.machine.passes_through(signal)
                    && !SigSet::JOB_CONTROL.contains(signal)
                {
                    // The hot path: a signal the machine would only pass on goes
                    // out now, before any bookkeeping, and costs one kill(2).
                    // Not SIGCONT and the stops: job control comes first for
                    // them (the terminal goes back to the app before SIGCONT).
                    self.forward(signal);
                } else {
                    events.push(Event::Signal(signal));
                }
            }
            // Every exit of a child, orphans included, raises a SIGCHLD after
            // the fact: a wake without one costs no waitpid.
            if received.signals().contains(Signal::CHLD) {
                self.children_changed = true;
            }
            let mut app_stopped = None;
            while self.children_changed {
                let Some((pid, change)) = sys::next_child_change() else {
                    self.children_changed = false;
                    break;
                };
                let status = match change {
                    ChildChange::Exited(status) => status,
                    ChildChange::Stopped(signal) => {
                        if pid == self.app.pid && self.app_alive {
                            app_stopped = Signal::new(signal);
                        }
                        continue;
                    }
                };
                if pid == self.app.pid && self.app_alive {
                    self.app_alive = false;
                    app_stopped = None;
                    if let Some(health) = &self.health {
                        health.exited(status.code());
                    }
                    info!("the app {}", describe(status));
                    self.actions.app_exited();
                    events.push(Event::AppExited(status.code()));
                } else if self.actions.active()
                    && let Some(reaped) = self.actions.reaped(pid, status, self.started.elapsed())
                {
                    if let Reaped::StopFailed(signal) = reaped {
                        self.stop_after_all(signal);
                    }
                } else {
                    debug!("reaped pid {pid} ({})", describe(status));
                }
            }
            self.app.job_control(&received, app_stopped);
            if self.actions.active() {
                self.actions.service(self.now());
                deadline = self.next_deadline();
            }
            if events.is_empty() && deadline.is_none() {
                // Nothing to step: a Tick without a deadline does nothing, and
                // leftovers are only awaited with one. No clock read.
                continue;
            }
            let now = self.now();
            for event in events.drain(..) {
                if let Some(code) = self.feed(event, now) {
                    return code;
                }
            }
            // Before the deadline: nothing left to wait for means no SIGKILL to log.
            if self.machine.awaiting_leftovers()
                && !self.leftovers_alive()
                && let Some(code) = self.feed(Event::LeftoversGone, now)
            {
                return code;
            }
            if let Some(code) = self.feed(Event::Tick, now) {
                return code;
            }
            deadline = self.next_deadline();
        }
    }

    /// Steps the machine and carries out its actions; `Some(code)`: exit with it.
    fn feed(&mut self, event: Event, now: Duration) -> Option<i32> {
        self.machine
            .step(event, now)
            .into_iter()
            .find_map(|action| self.carry_out(action, now))
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
            warn!(
                target: output::STORM,
                "cannot send {signal} to {}: {}",
                describe_target(target),
                Reason(&e)
            );
        }
    }

    fn carry_out(&mut self, action: Action, now: Duration) -> Option<i32> {
        match action {
            Action::Forward(signal) => self.forward(signal),
            Action::Swallow { signal, at } if self.actions.stop_command_ran() => {
                info!(
                    "{}{signal} again: the stop command is stopping the app; not sending it",
                    stamp(Some(at))
                )
            }
            Action::Swallow { signal, at } => {
                info!(
                    target: output::STORM,
                    "{}{signal} again: the app already has its stop signal; not sending another",
                    stamp(Some(at))
                )
            }
            Action::StartDrain {
                signal,
                delay,
                kill_at,
            } => {
                self.start_drain(signal, delay);
                self.actions
                    .drain_started(signal, now, kill_at, self.app.pid);
            }
            Action::Stop {
                signal,
                reason,
                at,
                kill_at,
            } => {
                if reason == StopReason::Forwarded
                    || !self.app_alive
                    || !self.actions.stop(signal, now, self.app.pid)
                {
                    self.stop(signal, reason, at, kill_at)
                } else if let StopReason::CutShort(by) = reason {
                    info!("{}{by} received: drain delay cut short", stamp(at));
                }
            }
            Action::TermLeftovers {
                wait,
                spare_group,
                at,
            } => self.term_leftovers(wait, spare_group, at),
            Action::Kill {
                app_alive,
                exit,
                at,
            } => self.kill(app_alive, exit, at),
            Action::Exit(code) => {
                self.actions.end();
                debug!("exiting with code {code}");
                return Some(code);
            }
            Action::Sample => {
                let event = self.sample();
                return self.feed(event, self.now());
            }
            Action::Announce { at } => self.announce(at),
        }
        None
    }

    /// A signal from someone else, as the machine sees it; `None` for
    /// SIGCHLD (the reaping's business) and for what drainit raised itself.
    fn sent_by_others(&self, r: &sys::Received) -> Option<Signal> {
        let signal = Signal::new(r.signal)?;
        if signal == Signal::CHLD {
            return None;
        }
        if i64::from(r.sender) == i64::from(self.self_pid) {
            // Raised by drainit's own doing (a write to a closed pipe, say): not
            // the app's business. Never a log line about a signal that a write
            // raises: with stderr gone, that line would raise the next one.
            if !matches!(r.signal, libc::SIGPIPE | libc::SIGXFSZ) {
                debug!("ignoring {signal} raised by drainit itself");
            }
            return None;
        }
        Some(signal)
    }

    /// Passes a signal on to the app, while there is one to reach.
    fn forward(&self, signal: Signal) {
        match self.app_target() {
            Some(target) => {
                self.signal(target, signal);
                debug!("forwarded {signal} to {}", describe_target(target));
            }
            None => debug!("{signal} not forwarded: the app has exited"),
        }
    }

    /// Tells the health listener, if any, that a drain has started.
    fn tell_draining(&self, signal: Signal) {
        if let Some(health) = &self.health {
            health.draining(signal);
        }
    }

    fn start_drain(&mut self, signal: Signal, delay: Duration) {
        self.drain_signal = Some(signal);
        let ready_fail_after = self.drain().map_or(Duration::ZERO, |d| d.ready_fail_after);
        if !ready_fail_after.is_zero() {
            info!(
                "{}{signal} received: drain started; /ready and the drain file tell the load balancer at {}{}",
                stamp(Some(Duration::ZERO)),
                since(ready_fail_after),
                self.serving(delay)
            );
            return;
        }
        let file = self.announce_file(signal);
        info!(
            "{}{signal} received: drain started{file}{}",
            stamp(Some(Duration::ZERO)),
            self.serving(delay)
        );
    }

    /// "; the app keeps serving for 30s" (adaptive: "at most").
    fn serving(&self, delay: Duration) -> String {
        if delay.is_zero() {
            return String::new();
        }
        match self.adaptive() {
            Some(a) => format!(
                "; the app keeps serving until no new connection has come for {} and none carries a request (at least {}, at most {})",
                format_duration(a.quiet),
                format_duration(a.min),
                format_duration(delay)
            ),
            None => format!("; the app keeps serving for {}", format_duration(delay)),
        }
    }

    /// `--ready-fail-after` is over: the drain file and /ready tell the load balancer.
    fn announce(&self, at: Duration) {
        let signal = self.drain_signal.unwrap_or(Signal::TERM);
        let file = self.announce_file(signal);
        let ready = if self.health.is_some() {
            "; /ready answers 503"
        } else {
            ""
        };
        info!("{}--ready-fail-after over{ready}{file}", stamp(Some(at)));
    }

    /// Tells the listener and writes the drain file; "; drain file X written", or nothing.
    fn announce_file(&self, signal: Signal) -> String {
        self.tell_draining(signal);
        match (&self.drain_file, &self.launch.drain_file) {
            (Some(drain_file), Some(path)) => match drain_file.write(signal) {
                Ok(()) => format!("; drain file {} written", crate::text::path(path)),
                Err(e) => {
                    warn!(
                        "cannot write drain file {}: {}; draining anyway",
                        crate::text::path(path),
                        Reason(&e)
                    );
                    String::new()
                }
            },
            _ => String::new(),
        }
    }

    /// Looks at the app's traffic (the first time: finds its ports); a
    /// failure is warned about once, and the drain falls back to its fixed delay.
    fn sample(&mut self) -> Event {
        let result = match self.sampler.as_mut() {
            Some(sampler) => sampler.sample(),
            None => self.start_sampling(),
        };
        match result {
            Ok(s) => {
                if s.new > 0 || s.busy > 0 {
                    debug!("{} new connection(s), {} carrying a request", s.new, s.busy);
                }
                Event::Traffic {
                    new: s.new,
                    busy: s.busy,
                }
            }
            Err(e) => {
                self.sampler = None;
                let max = self.drain().map_or(Duration::ZERO, |d| d.delay);
                warn!(
                    "--drain-quiet: cannot see the app's connections: {e}; falling back to the fixed delay of {}",
                    format_duration(max)
                );
                Event::Blind
            }
        }
    }

    fn start_sampling(&mut self) -> Result<crate::traffic::Sample, String> {
        use crate::traffic::{Sampler, Whose};
        let whose = if self.pid1 && procfs::is_ours() {
            Whose::AllButDrainit
        } else if self.app.own_group {
            Whose::Group(self.app.pid)
        } else {
            Whose::Pid(self.app.pid)
        };
        let (quiet, ignore) = self.adaptive().map_or((Duration::ZERO, vec![]), |a| {
            (a.quiet, a.ignore_from.clone())
        });
        let sampler = Sampler::start(whose, ignore, quiet)?;
        info!(
            "--drain-quiet: watching the app's TCP port(s) {}",
            sampler
                .ports()
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        );
        self.sampler = Some(sampler);
        // The baseline: what is open now is not new, but may be busy.
        self.sampler
            .as_mut()
            .map_or(Err(String::new()), |s| s.sample())
    }

    fn stop(
        &self,
        signal: Signal,
        reason: StopReason,
        at: Option<Duration>,
        kill_at: Option<Duration>,
    ) {
        if reason == StopReason::Forwarded {
            // No drain configured: for the listener, the stop is the drain.
            self.tell_draining(signal);
        }
        let Some(target) = self.app_target() else {
            return;
        };
        self.signal(target, signal);
        if signal.followed_by_cont() {
            // A stopped process acts on its stop signal only once continued.
            self.signal(target, Signal::CONT);
        }
        let to = describe_target(target);
        let kill = kill_at
            .map(|k| format!("; SIGKILL at {}", since(k)))
            .unwrap_or_default();
        let stamp = stamp(at);
        match reason {
            StopReason::Forwarded => info!("forwarded {signal} to {to}"),
            StopReason::DelayOver => {
                match (self.machine.busy(), self.machine.quiet_for(self.now())) {
                    (Some(busy), Some(quiet_for)) if self.sampler.is_some() => info!(
                        "{stamp}drain delay (the maximum) over with {busy} connection(s) carrying a request, the last new one {} ago; sending {signal} to {to}{kill}",
                        format_duration(to_tenths(quiet_for))
                    ),
                    _ => info!("{stamp}sending {signal} to {to}{kill}"),
                }
            }
            StopReason::CutShort(by) => {
                info!("{stamp}{by} received: drain delay cut short; sending {signal} to {to}{kill}")
            }
            StopReason::Quiet { quiet_for } => {
                let max = self.drain().map_or(Duration::ZERO, |d| d.delay);
                info!(
                    "{stamp}no new connection for {}, 0 in flight: stopping at {} of at most {}; sending {signal} to {to}{kill}",
                    format_duration(to_tenths(quiet_for)),
                    since(to_tenths(at.unwrap_or_default())),
                    format_duration(max)
                )
            }
        }
    }

    /// The stop command failed: the stop signal (and SIGCONT) after all.
    fn stop_after_all(&self, signal: Signal) {
        if !self.app_alive {
            return;
        }
        if let Some(target) = self.app_target() {
            self.signal(target, signal);
            if signal.followed_by_cont() {
                self.signal(target, Signal::CONT);
            }
        }
    }

    /// The app has exited: SIGTERM (and SIGCONT) to what it left behind, unless
    /// they already had a stop signal; they get `wait` to finish.
    fn term_leftovers(&self, wait: Duration, spare_group: bool, at: Option<Duration>) {
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
        let told = match (targets.is_empty(), spare_group) {
            (true, _) => "they already had a stop signal",
            (false, true) => "sent SIGTERM to those that had no stop signal yet",
            (false, false) => "sent them SIGTERM",
        };
        info!(
            "{}the app left processes behind; {told}; waiting up to {} before SIGKILL",
            stamp(at),
            format_duration(to_tenths(wait))
        );
    }

    fn kill(&self, app_alive: bool, exit: i32, at: Option<Duration>) {
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
        let stamp = stamp(at);
        if app_alive {
            warn!("{stamp}kill deadline reached: SIGKILL to {what}; exiting {exit}");
        } else {
            warn!("{stamp}grace period over: SIGKILL to {what}");
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

/// "t+5.0s: " while a drain runs (`at`: the time since it started).
fn stamp(at: Option<Duration>) -> String {
    at.map(|t| format!("{}: ", since(t))).unwrap_or_default()
}

/// To the tenth of a second: "5s", not "4.999s".
fn to_tenths(d: Duration) -> Duration {
    let tenths = d.as_millis().saturating_add(50) / 100;
    Duration::from_millis(u64::try_from(tenths.saturating_mul(100)).unwrap_or(u64::MAX))
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
