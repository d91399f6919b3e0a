//! The shutdown logic as a pure state machine.
//!
//! `Machine::step(event, now)` says what to do; `Machine::next_deadline()` says
//! when to wake up next. No syscalls and no clock reads: `now` is the time
//! since drainit started, handed in by the supervisor (or by `--explain`'s
//! synthetic clock), so every path is tested with plain tables.
//!
//! Without a drain policy the machine is the core init: every signal is
//! forwarded at once. With one, a drain signal starts the sequence
//! drain file → delay → stop signal (+ SIGCONT) → SIGKILL at the kill deadline.
//! With `--drain-quiet` the delay is a maximum: during it the machine asks
//! for a sample of the app's traffic every `SAMPLE_EVERY` (`Action::Sample`,
//! answered by `Event::Traffic`, or `Event::Blind` for the fixed delay) and
//! stops once `--drain-min` has passed, nothing new came for the quiet period
//! and nothing is busy. With `--ready-fail-after`, the drain is told to the
//! load balancer (`Action::Announce`) that long after it starts.
//! Either way, once the app has exited, the processes it left get SIGTERM
//! (unless they already had a stop signal), a grace period, then SIGKILL.
//!
//! The machine is the only place that knows the timeline: every action carries
//! the times its carrying-out and its log line need, counted from the drain's
//! start. All arithmetic saturates, so no option value can make it overflow.

use std::time::Duration;

use crate::exit::Status;
use crate::signals::{self, SigSet, Signal};

/// How long to wait for processes to vanish after SIGKILL before exiting anyway
/// (a process stuck in uninterruptible sleep must not keep drainit alive).
pub const KILL_WAIT: Duration = Duration::from_secs(2);

/// What the drain options ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Drain {
    /// Signals that start a drain (`--drain-on`).
    pub on: SigSet,
    /// How long the app keeps serving after the drain starts (`--drain-delay`).
    pub delay: Duration,
    /// What the app's group is sent when the delay ends; `None`: the signal that started the drain.
    pub stop_signal: Option<Signal>,
    /// When, counted from the drain's start, everything left is SIGKILLed.
    pub kill_after: Option<Duration>,
    /// `--drain-quiet`: the delay ends early once the app's traffic has gone
    /// (`delay` is then the maximum).
    pub adaptive: Option<Box<Adaptive>>,
    /// `--ready-fail-after`: the drain file and `/ready` tell the load
    /// balancer this long after the drain starts (zero: at once).
    pub ready_fail_after: Duration,
}

/// The adaptive drain (`--drain-quiet`, `--drain-min`): the stop signal goes
/// once at least `min` has passed since the drain started, no new connection
/// has reached the app for `quiet` (counted from the drain's announcement at
/// the earliest), and no connection carries a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adaptive {
    pub min: Duration,
    pub quiet: Duration,
    /// `--drain-ignore-from`: peers whose connections never count.
    pub ignore_from: Vec<crate::traffic::Cidr>,
}

/// How often the app's traffic is sampled during an adaptive drain (and only then).
pub const SAMPLE_EVERY: Duration = Duration::from_millis(100);

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    /// `None`: no drain option was given; signals are forwarded at once.
    pub drain: Option<Drain>,
    /// How long processes left behind by the app get after SIGTERM (`--grace`).
    pub grace: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    /// drainit received a signal (never SIGCHLD).
    Signal(Signal),
    /// The app (the main child) was reaped; its exit code.
    AppExited(i32),
    /// The clock reads `now`: do whatever is due by then (nothing, if nothing
    /// is). Safe to send at any wake-up; the machine alone checks its deadlines.
    Tick,
    /// Nothing that drainit waits for is left alive.
    LeftoversGone,
    /// A sample of the app's traffic (after `Action::Sample`): `new`
    /// connections since the last sample, `busy` connections carrying a request now.
    Traffic { new: u32, busy: u32 },
    /// The app's sockets cannot be seen: the adaptive drain falls back to the fixed delay.
    Blind,
}

/// Why the stop signal went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The drain delay ran out (or was zero).
    DelayOver,
    /// This signal arrived during the delay and cut it short.
    CutShort(Signal),
    /// SIGTERM that starts no drain is passed on at once (with SIGCONT, as every stop signal).
    Forwarded,
    /// The adaptive drain saw no new connection for `quiet_for` and none busy.
    Quiet { quiet_for: Duration },
}

/// What to do. Times named `at` are counted from the drain's start (`None`: no
/// drain has started); `kill_at` is the drain's kill deadline, counted the same way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this signal on to the app's process group.
    Forward(Signal),
    /// Not forwarding this signal: the app already has its stop signal.
    Swallow { signal: Signal, at: Duration },
    /// A drain started now, by `signal`: write the drain file if there is one.
    /// The stop signal follows after `delay`.
    StartDrain {
        signal: Signal,
        delay: Duration,
        kill_at: Option<Duration>,
    },
    /// Send `signal` to the app's process group, then SIGCONT.
    Stop {
        signal: Signal,
        reason: StopReason,
        at: Option<Duration>,
        kill_at: Option<Duration>,
    },
    /// The app exited: SIGTERM the processes it left behind, which get `wait`
    /// before SIGKILL; `spare_group`: the app's group already had a stop
    /// signal, do not send it another.
    TermLeftovers {
        wait: Duration,
        spare_group: bool,
        at: Option<Duration>,
    },
    /// SIGKILL the app's group and, as PID 1, everything else left.
    /// `app_alive`: the kill deadline caught the app itself (not only what it
    /// left); drainit exits with `exit` unless the app is reaped with a code of its own.
    Kill {
        app_alive: bool,
        exit: i32,
        at: Option<Duration>,
    },
    /// Exit with this code.
    Exit(i32),
    /// Sample the app's traffic now and step `Event::Traffic` (or `Event::Blind`).
    Sample,
    /// `--ready-fail-after` is over: write the drain file and fail `/ready` now.
    Announce { at: Duration },
}

/// What a signal does, by phase (see `Machine::route`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// Starts the drain (a `--drain-on` signal while the app runs).
    StartDrain,
    /// Ends the drain delay now; the stop signal follows `trigger`.
    CutShort(Signal),
    /// The app already has this stop signal: not sent again.
    Swallow,
    /// Passed on to the app (SIGTERM with SIGCONT).
    Forward,
    /// Too late: everything left was SIGKILLed.
    Drop,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The app runs; no drain has started.
    Running,
    /// A drain started at `drain_start`; the stop signal goes out at `drain_start + delay`.
    Delay {
        trigger: Signal,
    },
    /// The stop signal went out; waiting for the app until the kill deadline, if any.
    Stopping {
        sent: Signal,
    },
    /// The app exited; waiting for its leftovers until `until`.
    Leftovers {
        until: Duration,
    },
    /// SIGKILL went out; waiting for the dead to be reaped until `until`.
    Killed {
        until: Duration,
    },
    Done,
}

/// The code of an app that SIGKILL ended (or that outlived its SIGKILL).
fn killed() -> i32 {
    Status::Signaled(signals::KILL).code()
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Machine<'p> {
    policy: &'p Policy,
    phase: Phase,
    /// When the drain started, if one did.
    drain_start: Option<Duration>,
    /// The app's group already got a stop signal (TERM, INT, QUIT or the stop signal).
    group_stopped: bool,
    /// The app's exit code, once it is reaped.
    app_code: Option<i32>,
    /// The signals `passes_through` says yes to, worked out after each step:
    /// the supervisor's hot path reads one word.
    through: SigSet,
    /// The adaptive drain's view of the traffic (while it samples).
    watch: Option<Watch>,
    /// The drain file and `/ready` have told the load balancer (`--ready-fail-after`).
    announced: bool,
}

/// What the adaptive drain knows of the app's traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Watch {
    /// When the last sample was asked for.
    sampled: Duration,
    /// When a new connection was last seen (or the drain was announced).
    last_new: Duration,
    /// Connections carrying a request at the last sample.
    busy: u32,
}

impl<'p> Machine<'p> {
    pub fn new(policy: &'p Policy) -> Machine<'p> {
        let mut machine = Machine {
            policy,
            phase: Phase::Running,
            drain_start: None,
            group_stopped: false,
            app_code: None,
            through: SigSet::EMPTY,
            watch: None,
            announced: false,
        };
        machine.through = machine.pass_through_set();
        machine
    }

    /// Whether the app has exited and drainit waits for what it left.
    pub fn awaiting_leftovers(&self) -> bool {
        matches!(self.phase, Phase::Leftovers { .. } | Phase::Killed { .. })
            && self.app_code.is_some()
    }

    #[cfg(test)]
    pub fn is_done(&self) -> bool {
        self.phase == Phase::Done
    }

    /// How long the app keeps serving once a drain starts.
    fn delay(&self) -> Duration {
        self.policy
            .drain
            .as_ref()
            .map_or(Duration::ZERO, |d| d.delay)
    }

    fn adaptive(&self) -> Option<&Adaptive> {
        self.policy.drain.as_ref()?.adaptive.as_deref()
    }

    fn ready_fail_after(&self) -> Duration {
        self.policy
            .drain
            .as_ref()
            .map_or(Duration::ZERO, |d| d.ready_fail_after)
    }

    /// The kill deadline, counted from the drain's start.
    fn kill_at(&self) -> Option<Duration> {
        self.policy.drain.as_ref()?.kill_after
    }

    /// The kill deadline on the clock, once a drain has started.
    fn kill_deadline(&self) -> Option<Duration> {
        Some(self.drain_start?.saturating_add(self.kill_at()?))
    }

    /// `now`, counted from the drain's start.
    fn at(&self, now: Duration) -> Option<Duration> {
        self.drain_start.map(|start| now.saturating_sub(start))
    }

    /// The next moment at which a `Tick` has something to do, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        match self.phase {
            Phase::Running | Phase::Done => None,
            Phase::Delay { .. } => {
                let start = self.drain_start?;
                let mut due = start.saturating_add(self.delay());
                if !self.announced {
                    due = due.min(start.saturating_add(self.ready_fail_after()));
                }
                if let Some(watch) = self.watch {
                    due = due.min(watch.sampled.saturating_add(SAMPLE_EVERY));
                }
                Some(due)
            }
            Phase::Stopping { .. } => self.kill_deadline(),
            Phase::Leftovers { until } | Phase::Killed { until } => Some(until),
        }
    }

    pub fn step(&mut self, event: Event, now: Duration) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Signal(signal) => self.on_signal(signal, now, &mut actions),
            Event::AppExited(code) => self.on_app_exit(code, now, &mut actions),
            Event::Tick => {
                if self.next_deadline().is_some_and(|due| now >= due) {
                    self.on_deadline(now, &mut actions);
                }
            }
            Event::LeftoversGone => {
                if let (true, Some(code)) = (self.awaiting_leftovers(), self.app_code) {
                    self.phase = Phase::Done;
                    actions.push(Action::Exit(code));
                }
            }
            Event::Traffic { new, busy } => self.on_traffic(new, busy, now, &mut actions),
            Event::Blind => self.watch = None,
        }
        self.through = self.pass_through_set();
        actions
    }

    /// What a signal does in the current phase: the one decision that
    /// `on_signal` carries out and `passes_through` reads.
    fn route(&self, signal: Signal) -> Route {
        let drain_on = self.policy.drain.as_ref().map(|d| d.on);
        match self.phase {
            Phase::Running => match drain_on {
                Some(on) if on.contains(signal) => Route::StartDrain,
                _ => Route::Forward,
            },
            Phase::Delay { trigger } => {
                if drain_on.is_some_and(|on| on.contains(signal)) || signal == Signal::INT {
                    Route::CutShort(trigger)
                } else {
                    Route::Forward
                }
            }
            Phase::Stopping { sent } if signal == sent => Route::Swallow,
            Phase::Stopping { .. } | Phase::Leftovers { .. } => Route::Forward,
            Phase::Killed { .. } | Phase::Done => Route::Drop,
        }
    }

    /// Whether `step(Event::Signal(signal), _)` would return exactly
    /// `[Action::Forward(signal)]` and leave the machine as it was, whatever
    /// the time: the supervisor then forwards the signal at once, before any
    /// other work of the wake-up, and does not step the machine for it.
    pub fn passes_through(&self, signal: Signal) -> bool {
        self.through.contains(signal)
    }

    /// Every signal that a step would only forward, unchanged (see `forward`).
    fn pass_through_set(&self) -> SigSet {
        SigSet::all()
            .iter()
            .filter(|&signal| {
                self.route(signal) == Route::Forward
                    && signal != Signal::TERM
                    && (self.group_stopped || !is_stop_signal(signal))
            })
            .fold(SigSet::EMPTY, SigSet::with)
    }

    fn on_signal(&mut self, signal: Signal, now: Duration, actions: &mut Vec<Action>) {
        match self.route(signal) {
            Route::StartDrain => {
                self.drain_start = Some(now);
                let delay = self.delay();
                self.announced = self.ready_fail_after().is_zero();
                actions.push(Action::StartDrain {
                    signal,
                    delay,
                    kill_at: self.kill_at(),
                });
                if delay.is_zero() {
                    self.stop(signal, StopReason::DelayOver, now, actions);
                } else {
                    self.phase = Phase::Delay { trigger: signal };
                    if self.adaptive().is_some() {
                        // The first sample is the baseline: what is open now is not new.
                        self.watch = Some(Watch {
                            sampled: now,
                            last_new: now.saturating_add(self.ready_fail_after()),
                            busy: 0,
                        });
                        actions.push(Action::Sample);
                    }
                }
            }
            Route::CutShort(trigger) => {
                self.stop(trigger, StopReason::CutShort(signal), now, actions)
            }
            Route::Swallow => actions.push(Action::Swallow {
                signal,
                at: self.at(now).unwrap_or_default(),
            }),
            Route::Forward => self.forward(signal, actions),
            Route::Drop => {}
        }
    }

    /// Passes a signal on; SIGTERM, as a stop signal, comes with SIGCONT, whatever the drain options.
    fn forward(&mut self, signal: Signal, actions: &mut Vec<Action>) {
        if is_stop_signal(signal) {
            self.group_stopped = true;
        }
        if signal == Signal::TERM {
            // A stopped app ignores SIGTERM until continued.
            actions.push(Action::Stop {
                signal,
                reason: StopReason::Forwarded,
                at: None,
                kill_at: None,
            });
        } else {
            actions.push(Action::Forward(signal));
        }
    }

    fn stop(
        &mut self,
        trigger: Signal,
        reason: StopReason,
        now: Duration,
        actions: &mut Vec<Action>,
    ) {
        let signal = self
            .policy
            .drain
            .as_ref()
            .and_then(|d| d.stop_signal)
            .unwrap_or(trigger);
        self.group_stopped = true;
        self.phase = Phase::Stopping { sent: signal };
        if !self.announced {
            self.announced = true;
            actions.push(Action::Announce {
                at: self.at(now).unwrap_or_default(),
            });
        }
        actions.push(Action::Stop {
            signal,
            reason,
            at: self.at(now),
            kill_at: self.kill_at(),
        });
    }

    fn on_app_exit(&mut self, code: i32, now: Duration, actions: &mut Vec<Action>) {
        if self.app_code.is_some() {
            return;
        }
        self.app_code = Some(code);
        match self.phase {
            Phase::Running | Phase::Delay { .. } | Phase::Stopping { .. } => {
                let grace_end = now.saturating_add(self.policy.grace);
                let until = self
                    .kill_deadline()
                    .map_or(grace_end, |kill| kill.min(grace_end));
                self.phase = Phase::Leftovers { until };
                actions.push(Action::TermLeftovers {
                    wait: until.saturating_sub(now),
                    spare_group: self.group_stopped,
                    at: self.at(now),
                });
            }
            Phase::Leftovers { .. } | Phase::Killed { .. } | Phase::Done => {}
        }
    }

    fn on_deadline(&mut self, now: Duration, actions: &mut Vec<Action>) {
        match self.phase {
            Phase::Delay { trigger } => self.on_delay_deadline(trigger, now, actions),
            Phase::Stopping { .. } | Phase::Leftovers { .. } => {
                self.phase = Phase::Killed {
                    until: now.saturating_add(KILL_WAIT),
                };
                actions.push(Action::Kill {
                    app_alive: self.app_code.is_none(),
                    exit: self.app_code.unwrap_or_else(killed),
                    at: self.at(now),
                });
            }
            Phase::Killed { .. } => {
                self.phase = Phase::Done;
                // The app that outlived its SIGKILL counts as killed by it.
                actions.push(Action::Exit(self.app_code.unwrap_or_else(killed)));
            }
            Phase::Running | Phase::Done => {}
        }
    }
}

impl Machine<'_> {
    /// A deadline during the delay: the maximum, the announcement, or a sample.
    fn on_delay_deadline(&mut self, trigger: Signal, now: Duration, actions: &mut Vec<Action>) {
        let Some(start) = self.drain_start else {
            return;
        };
        if now >= start.saturating_add(self.delay()) {
            self.stop(trigger, StopReason::DelayOver, now, actions);
            return;
        }
        if !self.announced && now >= start.saturating_add(self.ready_fail_after()) {
            self.announced = true;
            actions.push(Action::Announce {
                at: now.saturating_sub(start),
            });
        }
        if let Some(watch) = self.watch.as_mut()
            && now >= watch.sampled.saturating_add(SAMPLE_EVERY)
        {
            watch.sampled = now;
            actions.push(Action::Sample);
        }
    }

    /// A sample of the app's traffic: the stop signal goes once `min` has
    /// passed, nothing new came for `quiet` and nothing is busy.
    fn on_traffic(&mut self, new: u32, busy: u32, now: Duration, actions: &mut Vec<Action>) {
        let (Phase::Delay { trigger }, Some(start), Some(adaptive)) =
            (self.phase, self.drain_start, self.adaptive())
        else {
            return;
        };
        let (min, quiet) = (adaptive.min, adaptive.quiet);
        let Some(watch) = self.watch.as_mut() else {
            return;
        };
        if new > 0 {
            watch.last_new = watch.last_new.max(now);
        }
        watch.busy = busy;
        let quiet_for = now.saturating_sub(watch.last_new);
        if self.announced && now.saturating_sub(start) >= min && quiet_for >= quiet && busy == 0 {
            self.stop(trigger, StopReason::Quiet { quiet_for }, now, actions);
        }
    }

    /// Connections carrying a request at the last sample, during an adaptive drain.
    pub fn busy(&self) -> Option<u32> {
        self.watch.map(|w| w.busy)
    }

    /// How long no new connection has come, at `now`, during an adaptive drain.
    pub fn quiet_for(&self, now: Duration) -> Option<Duration> {
        self.watch.map(|w| now.saturating_sub(w.last_new))
    }
}

/// Signals after which drainit does not add a SIGTERM of its own.
fn is_stop_signal(signal: Signal) -> bool {
    matches!(signal, Signal::TERM | Signal::INT | Signal::QUIT)
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use Action::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn core() -> Policy {
        Policy {
            drain: None,
            grace: secs(5.0),
        }
    }

    fn drain(delay: f64, stop: Option<Signal>, kill_after: Option<f64>) -> Policy {
        Policy {
            drain: Some(Drain {
                on: SigSet::of(&[Signal::TERM]),
                delay: secs(delay),
                stop_signal: stop,
                kill_after: kill_after.map(secs),
                adaptive: None,
                ready_fail_after: Duration::ZERO,
            }),
            grace: secs(5.0),
        }
    }

    fn sig(n: i32) -> Event {
        Event::Signal(Signal::new(n).unwrap())
    }

    fn start(signal: Signal, delay: f64, kill_at: Option<f64>) -> Action {
        StartDrain {
            signal,
            delay: secs(delay),
            kill_at: kill_at.map(secs),
        }
    }

    fn stop(signal: Signal, reason: StopReason, at: f64, kill_at: Option<f64>) -> Action {
        Stop {
            signal,
            reason,
            at: Some(secs(at)),
            kill_at: kill_at.map(secs),
        }
    }

    fn forwarded_term() -> Action {
        Stop {
            signal: Signal::TERM,
            reason: StopReason::Forwarded,
            at: None,
            kill_at: None,
        }
    }

    fn leftovers(wait: f64, spare_group: bool, at: Option<f64>) -> Action {
        TermLeftovers {
            wait: secs(wait),
            spare_group,
            at: at.map(secs),
        }
    }

    fn kill(app_alive: bool, exit: i32, at: Option<f64>) -> Action {
        Kill {
            app_alive,
            exit,
            at: at.map(secs),
        }
    }

    /// Runs a table of (time, event, expected actions, expected next deadline).
    fn run(policy: &Policy, table: &[(f64, Event, &[Action], Option<f64>)]) {
        let mut m = Machine::new(policy);
        for (i, (at, event, want, deadline)) in table.iter().enumerate() {
            let got = m.step(*event, secs(*at));
            assert_eq!(got, *want, "row {i}: {event:?} at {at}s");
            assert_eq!(
                m.next_deadline(),
                deadline.map(secs),
                "row {i}: deadline after {event:?}"
            );
        }
    }

    fn adaptive(delay: f64, min: f64, quiet: f64, rfa: f64) -> Policy {
        let mut policy = drain(delay, None, Some(delay + 10.0));
        if let Some(d) = policy.drain.as_mut() {
            d.adaptive = Some(Box::new(Adaptive {
                min: secs(min),
                quiet: secs(quiet),
                ignore_from: vec![],
            }));
            d.ready_fail_after = secs(rfa);
        }
        policy
    }

    fn traffic(new: u32, busy: u32) -> Event {
        Event::Traffic { new, busy }
    }

    fn quiet(quiet_for: f64, at: f64, kill_at: f64) -> Action {
        stop(
            Signal::TERM,
            StopReason::Quiet {
                quiet_for: secs(quiet_for),
            },
            at,
            Some(kill_at),
        )
    }

    #[test]
    fn adaptive_stops_once_quiet_and_nothing_busy() {
        run(
            &adaptive(30.0, 0.0, 1.0, 0.0),
            &[
                (
                    10.0,
                    sig(15),
                    &[start(Signal::TERM, 30.0, Some(40.0)), Sample],
                    Some(10.1),
                ),
                // The baseline: what is open is not new.
                (10.0, traffic(0, 0), &[], Some(10.1)),
                (10.1, Event::Tick, &[Sample], Some(10.2)),
                (10.1, traffic(0, 0), &[], Some(10.2)),
                // A new connection resets the quiet period.
                (10.5, Event::Tick, &[Sample], Some(10.6)),
                (10.5, traffic(1, 1), &[], Some(10.6)),
                (11.0, Event::Tick, &[Sample], Some(11.1)),
                (11.0, traffic(0, 0), &[], Some(11.1)),
                (11.4, Event::Tick, &[Sample], Some(11.5)),
                (11.4, traffic(0, 0), &[], Some(11.5)),
                (11.5, Event::Tick, &[Sample], Some(11.6)),
                (11.5, traffic(0, 0), &[quiet(1.0, 1.5, 40.0)], Some(50.0)),
                // Late samples change nothing once stopped.
                (11.6, traffic(0, 0), &[], Some(50.0)),
            ],
        );
    }

    #[test]
    fn adaptive_waits_while_a_request_is_in_flight_and_the_maximum_holds() {
        run(
            &adaptive(3.0, 0.0, 1.0, 0.0),
            &[
                (
                    0.0,
                    sig(15),
                    &[start(Signal::TERM, 3.0, Some(13.0)), Sample],
                    Some(0.1),
                ),
                (0.0, traffic(0, 1), &[], Some(0.1)),
                (1.5, Event::Tick, &[Sample], Some(1.6)),
                (1.5, traffic(0, 1), &[], Some(1.6)),
                (2.95, Event::Tick, &[Sample], Some(3.0)),
                (2.95, traffic(0, 1), &[], Some(3.0)),
                (
                    3.0,
                    Event::Tick,
                    &[stop(Signal::TERM, StopReason::DelayOver, 3.0, Some(13.0))],
                    Some(13.0),
                ),
            ],
        );
        // Once the request is done, it stops at the next sample.
        let policy = adaptive(30.0, 0.0, 1.0, 0.0);
        let mut m = Machine::new(&policy);
        m.step(sig(15), secs(0.0));
        m.step(traffic(0, 1), secs(0.0));
        m.step(Event::Tick, secs(2.0));
        assert_eq!(m.step(traffic(0, 1), secs(2.0)), []);
        assert_eq!(m.busy(), Some(1));
        m.step(Event::Tick, secs(2.1));
        assert_eq!(m.step(traffic(0, 0), secs(2.1)), [quiet(2.1, 2.1, 40.0)]);
    }

    #[test]
    fn adaptive_never_stops_before_the_minimum() {
        let policy = adaptive(30.0, 5.0, 1.0, 0.0);
        let mut m = Machine::new(&policy);
        m.step(sig(15), secs(0.0));
        for tenth in 1..50 {
            let now = secs(f64::from(tenth) / 10.0);
            assert_eq!(m.step(Event::Tick, now), [Sample], "{now:?}");
            assert_eq!(m.step(traffic(0, 0), now), [], "{now:?}");
        }
        m.step(Event::Tick, secs(5.0));
        assert_eq!(m.step(traffic(0, 0), secs(5.0)), [quiet(5.0, 5.0, 40.0)]);
    }

    #[test]
    fn adaptive_falls_back_to_the_fixed_delay_when_blind() {
        run(
            &adaptive(5.0, 0.0, 1.0, 0.0),
            &[
                (
                    0.0,
                    sig(15),
                    &[start(Signal::TERM, 5.0, Some(15.0)), Sample],
                    Some(0.1),
                ),
                // No more samples: no wake-up before the maximum.
                (0.0, Event::Blind, &[], Some(5.0)),
                (2.0, traffic(0, 0), &[], Some(5.0)),
                (
                    5.0,
                    Event::Tick,
                    &[stop(Signal::TERM, StopReason::DelayOver, 5.0, Some(15.0))],
                    Some(15.0),
                ),
            ],
        );
    }

    #[test]
    fn ready_fail_after_announces_later_and_the_quiet_period_counts_from_then() {
        run(
            &adaptive(30.0, 0.0, 1.0, 2.0),
            &[
                (
                    0.0,
                    sig(15),
                    &[start(Signal::TERM, 30.0, Some(40.0)), Sample],
                    Some(0.1),
                ),
                (0.0, traffic(0, 0), &[], Some(0.1)),
                (1.95, Event::Tick, &[Sample], Some(2.0)),
                (1.95, traffic(0, 0), &[], Some(2.0)),
                (2.0, Event::Tick, &[Announce { at: secs(2.0) }], Some(2.05)),
                (2.05, Event::Tick, &[Sample], Some(2.15)),
                (2.05, traffic(0, 0), &[], Some(2.15)),
                (3.0, Event::Tick, &[Sample], Some(3.1)),
                (3.0, traffic(0, 0), &[quiet(1.0, 3.0, 40.0)], Some(40.0)),
            ],
        );
        // Without --drain-quiet: announced at its time, the stop at the delay's end.
        let mut policy = drain(5.0, None, Some(10.0));
        if let Some(d) = policy.drain.as_mut() {
            d.ready_fail_after = secs(3.0);
        }
        run(
            &policy,
            &[
                (
                    0.0,
                    sig(15),
                    &[start(Signal::TERM, 5.0, Some(10.0))],
                    Some(3.0),
                ),
                (3.0, Event::Tick, &[Announce { at: secs(3.0) }], Some(5.0)),
                (
                    5.0,
                    Event::Tick,
                    &[stop(Signal::TERM, StopReason::DelayOver, 5.0, Some(10.0))],
                    Some(10.0),
                ),
            ],
        );
        // A drain cut short still announces before it stops.
        let mut m = Machine::new(&policy);
        m.step(sig(15), secs(0.0));
        assert_eq!(
            m.step(sig(2), secs(1.0)),
            [
                Announce { at: secs(1.0) },
                stop(
                    Signal::TERM,
                    StopReason::CutShort(Signal::INT),
                    1.0,
                    Some(10.0)
                )
            ]
        );
    }

    #[test]
    fn core_forwards_every_signal_and_exits_with_the_app() {
        run(
            &core(),
            &[
                (0.1, sig(1), &[Forward(Signal::new(1).unwrap())], None),
                (0.2, sig(10), &[Forward(Signal::new(10).unwrap())], None),
                (0.3, sig(64), &[Forward(Signal::new(64).unwrap())], None),
                (0.4, sig(15), &[forwarded_term()], None),
                // A second SIGTERM from the operator is forwarded as well.
                (0.5, sig(15), &[forwarded_term()], None),
                (
                    1.0,
                    Event::AppExited(143),
                    &[leftovers(5.0, true, None)],
                    Some(6.0),
                ),
                (1.1, Event::LeftoversGone, &[Exit(143)], None),
            ],
        );
    }

    #[test]
    fn core_app_exit_without_signal_terms_the_group() {
        let policy = core();
        let mut m = Machine::new(&policy);
        assert_eq!(
            m.step(Event::AppExited(3), secs(2.0)),
            [leftovers(5.0, false, None)]
        );
        assert!(m.awaiting_leftovers());
        assert_eq!(m.next_deadline(), Some(secs(7.0)));
        // Ticks before the deadline do nothing.
        assert_eq!(m.step(Event::Tick, secs(6.9)), []);
        assert_eq!(m.step(Event::Tick, secs(7.0)), [kill(false, 3, None)]);
        assert_eq!(m.next_deadline(), Some(secs(7.0) + KILL_WAIT));
        assert_eq!(m.step(Event::Signal(Signal::TERM), secs(7.1)), []);
        assert_eq!(m.step(Event::LeftoversGone, secs(7.2)), [Exit(3)]);
        assert!(m.is_done());
    }

    #[test]
    fn int_and_quit_count_as_stop_signals_in_core() {
        let policy = core();
        let mut m = Machine::new(&policy);
        assert_eq!(m.step(sig(2), secs(0.0)), [Forward(Signal::INT)]);
        assert_eq!(
            m.step(Event::AppExited(130), secs(0.1)),
            [leftovers(5.0, true, None)]
        );
        let mut m = Machine::new(&policy);
        assert_eq!(
            m.step(sig(10), secs(0.0)),
            [Forward(Signal::new(10).unwrap())]
        );
        assert_eq!(
            m.step(Event::AppExited(0), secs(0.1)),
            [leftovers(5.0, false, None)]
        );
    }

    #[test]
    fn drain_writes_file_waits_delay_then_stops_then_kills() {
        run(
            &drain(5.0, None, Some(29.0)),
            &[
                (10.0, sig(10), &[Forward(Signal::new(10).unwrap())], None),
                (
                    20.0,
                    sig(15),
                    &[start(Signal::TERM, 5.0, Some(29.0))],
                    Some(25.0),
                ),
                // Other signals keep flowing during the delay.
                (
                    21.0,
                    sig(1),
                    &[Forward(Signal::new(1).unwrap())],
                    Some(25.0),
                ),
                (24.9, Event::Tick, &[], Some(25.0)),
                (
                    25.0,
                    Event::Tick,
                    &[stop(Signal::TERM, StopReason::DelayOver, 5.0, Some(29.0))],
                    Some(49.0),
                ),
                // Never a second SIGTERM once the app has its stop signal.
                (
                    30.0,
                    sig(15),
                    &[Swallow {
                        signal: Signal::TERM,
                        at: secs(10.0),
                    }],
                    Some(49.0),
                ),
                (31.0, sig(2), &[Forward(Signal::INT)], Some(49.0)),
                (
                    49.0,
                    Event::Tick,
                    &[kill(true, 137, Some(29.0))],
                    Some(51.0),
                ),
                (49.1, Event::AppExited(137), &[], Some(51.0)),
                (49.2, Event::LeftoversGone, &[Exit(137)], None),
            ],
        );
    }

    #[test]
    fn stop_signal_overrides_the_trigger() {
        let policy = drain(0.0, Some(Signal::QUIT), None);
        let mut m = Machine::new(&policy);
        assert_eq!(
            m.step(sig(15), secs(1.0)),
            [
                start(Signal::TERM, 0.0, None),
                stop(Signal::QUIT, StopReason::DelayOver, 0.0, None)
            ]
        );
        assert_eq!(m.next_deadline(), None);
        assert_eq!(
            m.step(Event::AppExited(0), secs(2.0)),
            [leftovers(5.0, true, Some(1.0))]
        );
        assert_eq!(m.next_deadline(), Some(secs(7.0)));
    }

    #[test]
    fn second_drain_signal_or_int_cuts_the_delay_short() {
        for cut in [15, 2] {
            let policy = drain(10.0, None, Some(20.0));
            let mut m = Machine::new(&policy);
            assert_eq!(
                m.step(sig(15), secs(1.0)),
                [start(Signal::TERM, 10.0, Some(20.0))]
            );
            let by = Signal::new(cut).unwrap();
            assert_eq!(
                m.step(sig(cut), secs(2.0)),
                [stop(
                    Signal::TERM,
                    StopReason::CutShort(by),
                    1.0,
                    Some(20.0)
                )]
            );
            // The kill deadline still counts from the drain's start.
            assert_eq!(m.next_deadline(), Some(secs(21.0)));
        }
    }

    #[test]
    fn app_exit_during_delay_ends_at_once() {
        let policy = drain(10.0, None, Some(20.0));
        let mut m = Machine::new(&policy);
        m.step(sig(15), secs(1.0));
        assert_eq!(
            m.step(Event::AppExited(0), secs(2.0)),
            [leftovers(5.0, false, Some(1.0))]
        );
        assert_eq!(m.step(Event::LeftoversGone, secs(2.0)), [Exit(0)]);
    }

    #[test]
    fn leftover_grace_never_passes_the_kill_deadline() {
        let policy = drain(1.0, None, Some(4.0));
        let mut m = Machine::new(&policy);
        m.step(sig(15), secs(0.0));
        m.step(Event::Tick, secs(1.0));
        assert_eq!(
            m.step(Event::AppExited(0), secs(2.0)),
            [leftovers(2.0, true, Some(2.0))]
        );
        assert_eq!(m.next_deadline(), Some(secs(4.0)));
        assert_eq!(m.step(Event::Tick, secs(4.0)), [kill(false, 0, Some(4.0))]);
        assert_eq!(m.step(Event::Tick, secs(6.0)), [Exit(0)]);
    }

    #[test]
    fn non_drain_signals_never_start_a_drain() {
        let policy = drain(5.0, None, Some(10.0));
        let mut m = Machine::new(&policy);
        for n in [1, 2, 3, 10, 12, 28] {
            let s = Signal::new(n).unwrap();
            assert_eq!(m.step(sig(n), secs(0.0)), [Forward(s)], "{s}");
        }
        assert_eq!(m.next_deadline(), None);
    }

    #[test]
    fn sigterm_that_starts_no_drain_comes_with_sigcont() {
        let mut policy = drain(5.0, None, Some(10.0));
        if let Some(d) = policy.drain.as_mut() {
            d.on = SigSet::of(&[Signal::new(10).unwrap()]);
        }
        run(
            &policy,
            &[
                (0.0, sig(15), &[forwarded_term()], None),
                (
                    1.0,
                    sig(10),
                    &[start(Signal::new(10).unwrap(), 5.0, Some(10.0))],
                    Some(6.0),
                ),
                // During the delay too.
                (2.0, sig(15), &[forwarded_term()], Some(6.0)),
                // The group had its SIGTERM: no second one for what the app leaves.
                (
                    3.0,
                    Event::AppExited(143),
                    &[leftovers(5.0, true, Some(2.0))],
                    Some(8.0),
                ),
            ],
        );
    }

    #[test]
    fn app_killed_but_never_reaped_exits_137() {
        let policy = drain(0.0, None, Some(3.0));
        let mut m = Machine::new(&policy);
        m.step(sig(15), secs(0.0));
        assert_eq!(m.step(Event::Tick, secs(3.0)), [kill(true, 137, Some(3.0))]);
        // LeftoversGone means nothing until the app itself is reaped.
        assert_eq!(m.step(Event::LeftoversGone, secs(3.5)), []);
        assert_eq!(m.step(Event::Tick, secs(5.0)), [Exit(137)]);
    }

    #[test]
    fn app_exit_is_taken_once() {
        let policy = core();
        let mut m = Machine::new(&policy);
        m.step(Event::AppExited(1), secs(0.0));
        assert_eq!(m.step(Event::AppExited(2), secs(0.1)), []);
        assert_eq!(m.step(Event::LeftoversGone, secs(0.2)), [Exit(1)]);
    }

    #[test]
    fn huge_durations_and_late_clocks_never_overflow() {
        let max = Duration::MAX;
        let near = max - Duration::from_secs(1);
        for (delay, kill, grace) in [
            (max, Some(max), max),
            (near, Some(max), max),
            (Duration::ZERO, Some(max), max),
            (max, None, max),
            (Duration::from_secs(1), Some(near), Duration::ZERO),
        ] {
            let policy = Policy {
                drain: Some(Drain {
                    on: SigSet::of(&[Signal::TERM]),
                    delay,
                    stop_signal: None,
                    kill_after: kill,
                    adaptive: None,
                    ready_fail_after: Duration::ZERO,
                }),
                grace,
            };
            for now in [Duration::ZERO, Duration::from_secs(3), near, max] {
                let mut m = Machine::new(&policy);
                m.step(sig(15), now);
                m.step(Event::Tick, max);
                m.step(sig(2), now);
                m.step(sig(15), max);
                m.step(Event::AppExited(0), now);
                assert!(m.next_deadline().is_some());
                m.step(Event::Tick, max);
                m.step(Event::Tick, max);
                assert!(m.is_done(), "{delay:?} {kill:?} {grace:?} at {now:?}");
            }
            // Adaptive, with every duration at its extreme.
            for (min, quiet, rfa) in [
                (max, max, near),
                (Duration::ZERO, near, max),
                (near, max, Duration::ZERO),
            ] {
                let mut policy = policy.clone();
                if let Some(d) = policy.drain.as_mut() {
                    d.adaptive = Some(Box::new(Adaptive {
                        min,
                        quiet,
                        ignore_from: vec![],
                    }));
                    d.ready_fail_after = rfa;
                }
                for now in [Duration::ZERO, near, max] {
                    let mut m = Machine::new(&policy);
                    m.step(sig(15), now);
                    m.step(
                        Event::Traffic {
                            new: u32::MAX,
                            busy: u32::MAX,
                        },
                        now,
                    );
                    m.step(Event::Tick, max);
                    m.step(Event::Traffic { new: 0, busy: 0 }, max);
                    let _ = m.quiet_for(max);
                    m.step(Event::AppExited(0), max);
                    m.step(Event::Tick, max);
                    m.step(Event::Tick, max);
                    assert!(m.is_done(), "{min:?} {quiet:?} {rfa:?} at {now:?}");
                }
            }
            // And without a drain.
            let core = Policy { drain: None, grace };
            let mut m = Machine::new(&core);
            m.step(Event::AppExited(0), max);
            assert_eq!(m.next_deadline(), Some(max));
            m.step(Event::Tick, max);
            assert_eq!(m.step(Event::Tick, max), [Exit(0)]);
        }
    }

    /// `passes_through` is exactly "step would only forward it, unchanged":
    /// checked for every signal in every phase the tables reach, so the
    /// supervisor's hot path and the machine never disagree.
    #[test]
    fn passes_through_is_exactly_an_unchanged_forward() {
        let usr1_drain = Policy {
            drain: Some(Drain {
                on: SigSet::of(&[Signal::new(10).unwrap(), Signal::TERM]),
                delay: secs(0.0),
                stop_signal: Some(Signal::QUIT),
                kill_after: None,
                adaptive: None,
                ready_fail_after: Duration::ZERO,
            }),
            grace: secs(5.0),
        };
        let policies = [
            core(),
            drain(5.0, None, Some(10.0)),
            drain(5.0, Some(Signal::QUIT), None),
            usr1_drain,
        ];
        let prefixes: &[&[(f64, Event)]] = &[
            &[],
            &[(0.1, sig(3))],
            &[(0.1, sig(2))],
            &[(0.1, sig(15))],
            &[(0.1, sig(10))],
            &[(0.1, sig(15)), (6.0, Event::Tick)],
            &[(0.1, sig(15)), (0.2, sig(2))],
            &[(0.1, Event::AppExited(3))],
            &[(0.1, sig(15)), (1.0, Event::AppExited(0))],
            &[(0.1, Event::AppExited(3)), (9.0, Event::Tick)],
            &[
                (0.1, Event::AppExited(3)),
                (9.0, Event::Tick),
                (20.0, Event::Tick),
            ],
        ];
        let mut phases = std::collections::BTreeSet::new();
        let mut fast = 0;
        for policy in &policies {
            for prefix in prefixes {
                let mut m = Machine::new(policy);
                for (at, event) in *prefix {
                    m.step(*event, secs(*at));
                }
                phases.insert(
                    format!("{:?}", m.phase)
                        .split([' ', '{'])
                        .next()
                        .unwrap()
                        .to_string(),
                );
                for n in 1..=64 {
                    let Some(signal) = Signal::new(n) else {
                        continue;
                    };
                    if signal == Signal::CHLD {
                        continue;
                    }
                    for now in [secs(0.5), secs(30.0)] {
                        let mut stepped = m.clone();
                        let actions = stepped.step(Event::Signal(signal), now);
                        let unchanged_forward = actions == [Forward(signal)] && stepped == m;
                        assert_eq!(
                            m.passes_through(signal),
                            unchanged_forward,
                            "{signal} after {prefix:?} under {policy:?}: {actions:?}"
                        );
                        fast += usize::from(unchanged_forward);
                    }
                }
            }
        }
        let all = [
            "Running",
            "Delay",
            "Stopping",
            "Leftovers",
            "Killed",
            "Done",
        ];
        assert_eq!(phases, all.iter().map(|p| p.to_string()).collect());
        assert!(fast > 1000, "the hot path is taken: {fast}");
    }
}
