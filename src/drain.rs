//! The shutdown logic as a pure state machine.
//!
//! `Machine::step(event, now)` says what to do; `Machine::next_deadline()` says
//! when to wake up next. No syscalls and no clock reads: `now` is the time
//! since drainit started, handed in by the supervisor, so every path is tested
//! with plain tables.
//!
//! Without a drain policy the machine is the core init: every signal is
//! forwarded at once. With one, a drain signal starts the sequence
//! drain file → delay → stop signal (+ SIGCONT) → SIGKILL at the kill deadline.
//! Either way, once the app has exited, the processes it left get SIGTERM
//! (unless they already had a stop signal), a grace period, then SIGKILL.

use std::time::Duration;

use crate::signals::{SigSet, Signal};

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
}

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
    /// `now` has reached `next_deadline()`.
    Deadline,
    /// Nothing that drainit waits for is left alive.
    LeftoversGone,
}

/// Why the stop signal went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The drain delay ran out (or was zero).
    DelayOver,
    /// This signal arrived during the delay and cut it short.
    CutShort(Signal),
    /// No drain is configured: SIGTERM is passed on at once.
    Forwarded,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Send this signal on to the app's process group.
    Forward(Signal),
    /// Not forwarding this signal: the app already has its stop signal.
    Swallow(Signal),
    /// A drain started, by this signal: write the drain file if there is one.
    StartDrain(Signal),
    /// Send the stop signal to the app's process group, then SIGCONT.
    Stop(Signal, StopReason),
    /// The app exited with this code: SIGTERM the processes it left behind;
    /// `spare_group`: the app's group already had a stop signal, do not send it another.
    TermLeftovers { code: i32, spare_group: bool },
    /// SIGKILL the app's group and, as PID 1, everything else left.
    Kill { app_alive: bool },
    /// Exit with this code.
    Exit(i32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The app runs; no drain has started.
    Running,
    /// A drain started at `since`; the stop signal goes out at `since + delay`.
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

#[derive(Clone, Debug)]
pub struct Machine {
    policy: Policy,
    phase: Phase,
    /// When the drain started, if one did.
    drain_start: Option<Duration>,
    /// The app's group already got a stop signal (TERM, INT, QUIT or the stop signal).
    group_stopped: bool,
    /// The app's exit code, once it is reaped.
    app_code: Option<i32>,
}

impl Machine {
    pub fn new(policy: Policy) -> Machine {
        Machine {
            policy,
            phase: Phase::Running,
            drain_start: None,
            group_stopped: false,
            app_code: None,
        }
    }

    /// When the drain started, for log lines that count from it.
    pub fn drain_start(&self) -> Option<Duration> {
        self.drain_start
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

    fn kill_deadline(&self) -> Option<Duration> {
        let drain = self.policy.drain.as_ref()?;
        Some(self.drain_start? + drain.kill_after?)
    }

    /// The next moment at which `step(Event::Deadline, ..)` is due, if any.
    pub fn next_deadline(&self) -> Option<Duration> {
        match self.phase {
            Phase::Running | Phase::Done => None,
            Phase::Delay { .. } => {
                let delay = self
                    .policy
                    .drain
                    .as_ref()
                    .map_or(Duration::ZERO, |d| d.delay);
                self.drain_start.map(|start| start + delay)
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
            Event::Deadline => {
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
        }
        actions
    }

    fn on_signal(&mut self, signal: Signal, now: Duration, actions: &mut Vec<Action>) {
        let drain_on = self.policy.drain.as_ref().map(|d| d.on);
        match self.phase {
            Phase::Running => match drain_on {
                Some(on) if on.contains(signal) => {
                    self.drain_start = Some(now);
                    actions.push(Action::StartDrain(signal));
                    let delay = self
                        .policy
                        .drain
                        .as_ref()
                        .map_or(Duration::ZERO, |d| d.delay);
                    if delay.is_zero() {
                        self.stop(signal, StopReason::DelayOver, actions);
                    } else {
                        self.phase = Phase::Delay { trigger: signal };
                    }
                }
                _ => {
                    if is_stop_signal(signal) {
                        self.group_stopped = true;
                    }
                    if drain_on.is_none() && signal == Signal::TERM {
                        // A stopped app ignores SIGTERM until continued.
                        actions.push(Action::Stop(signal, StopReason::Forwarded));
                    } else {
                        actions.push(Action::Forward(signal));
                    }
                }
            },
            Phase::Delay { trigger } => {
                if drain_on.is_some_and(|on| on.contains(signal)) || signal == Signal::INT {
                    self.stop(trigger, StopReason::CutShort(signal), actions);
                } else {
                    actions.push(Action::Forward(signal));
                }
            }
            Phase::Stopping { sent } => {
                if signal == sent {
                    actions.push(Action::Swallow(signal));
                } else {
                    actions.push(Action::Forward(signal));
                }
            }
            Phase::Leftovers { .. } => actions.push(Action::Forward(signal)),
            Phase::Killed { .. } | Phase::Done => {}
        }
    }

    fn stop(&mut self, trigger: Signal, reason: StopReason, actions: &mut Vec<Action>) {
        let signal = self
            .policy
            .drain
            .as_ref()
            .and_then(|d| d.stop_signal)
            .unwrap_or(trigger);
        self.group_stopped = true;
        self.phase = Phase::Stopping { sent: signal };
        actions.push(Action::Stop(signal, reason));
    }

    fn on_app_exit(&mut self, code: i32, now: Duration, actions: &mut Vec<Action>) {
        if self.app_code.is_some() {
            return;
        }
        self.app_code = Some(code);
        match self.phase {
            Phase::Running | Phase::Delay { .. } | Phase::Stopping { .. } => {
                let grace_end = now + self.policy.grace;
                let until = self
                    .kill_deadline()
                    .map_or(grace_end, |kill| kill.min(grace_end));
                self.phase = Phase::Leftovers { until };
                actions.push(Action::TermLeftovers {
                    code,
                    spare_group: self.group_stopped,
                });
            }
            Phase::Leftovers { .. } | Phase::Killed { .. } | Phase::Done => {}
        }
    }

    fn on_deadline(&mut self, now: Duration, actions: &mut Vec<Action>) {
        match self.phase {
            Phase::Delay { trigger } => self.stop(trigger, StopReason::DelayOver, actions),
            Phase::Stopping { .. } | Phase::Leftovers { .. } => {
                self.phase = Phase::Killed {
                    until: now + KILL_WAIT,
                };
                actions.push(Action::Kill {
                    app_alive: self.app_code.is_none(),
                });
            }
            Phase::Killed { .. } => {
                self.phase = Phase::Done;
                // The app that outlived its SIGKILL counts as killed by it.
                actions.push(Action::Exit(
                    self.app_code.unwrap_or(128 + crate::signals::KILL),
                ));
            }
            Phase::Running | Phase::Done => {}
        }
    }
}

/// Signals after which drainit does not add a SIGTERM of its own.
fn is_stop_signal(signal: Signal) -> bool {
    matches!(signal, Signal::TERM | Signal::INT | Signal::QUIT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Action::*;

    fn secs(s: f64) -> Duration {
        Duration::from_secs_f64(s)
    }

    fn core() -> Machine {
        Machine::new(Policy {
            drain: None,
            grace: secs(5.0),
        })
    }

    fn drain(delay: f64, stop: Option<Signal>, kill_after: Option<f64>) -> Machine {
        Machine::new(Policy {
            drain: Some(Drain {
                on: SigSet::of(&[Signal::TERM]),
                delay: secs(delay),
                stop_signal: stop,
                kill_after: kill_after.map(secs),
            }),
            grace: secs(5.0),
        })
    }

    fn sig(n: i32) -> Event {
        Event::Signal(Signal::new(n).unwrap())
    }

    /// Runs a table of (time, event, expected actions, expected next deadline).
    fn run(mut m: Machine, table: &[(f64, Event, &[Action], Option<f64>)]) {
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

    #[test]
    fn core_forwards_every_signal_and_exits_with_the_app() {
        run(
            core(),
            &[
                (0.1, sig(1), &[Forward(Signal::new(1).unwrap())], None),
                (0.2, sig(10), &[Forward(Signal::new(10).unwrap())], None),
                (0.3, sig(64), &[Forward(Signal::new(64).unwrap())], None),
                (
                    0.4,
                    sig(15),
                    &[Stop(Signal::TERM, StopReason::Forwarded)],
                    None,
                ),
                // A second SIGTERM from the operator is forwarded as well.
                (
                    0.5,
                    sig(15),
                    &[Stop(Signal::TERM, StopReason::Forwarded)],
                    None,
                ),
                (
                    1.0,
                    Event::AppExited(143),
                    &[TermLeftovers {
                        code: 143,
                        spare_group: true,
                    }],
                    Some(6.0),
                ),
                (1.1, Event::LeftoversGone, &[Exit(143)], None),
            ],
        );
    }

    #[test]
    fn core_app_exit_without_signal_terms_the_group() {
        let mut m = core();
        assert_eq!(
            m.step(Event::AppExited(3), secs(2.0)),
            [TermLeftovers {
                code: 3,
                spare_group: false
            }]
        );
        assert!(m.awaiting_leftovers());
        assert_eq!(m.next_deadline(), Some(secs(7.0)));
        // Early deadline calls do nothing.
        assert_eq!(m.step(Event::Deadline, secs(6.9)), []);
        assert_eq!(
            m.step(Event::Deadline, secs(7.0)),
            [Kill { app_alive: false }]
        );
        assert_eq!(m.next_deadline(), Some(secs(7.0) + KILL_WAIT));
        assert_eq!(m.step(Event::Signal(Signal::TERM), secs(7.1)), []);
        assert_eq!(m.step(Event::LeftoversGone, secs(7.2)), [Exit(3)]);
        assert!(m.is_done());
    }

    #[test]
    fn int_and_quit_count_as_stop_signals_in_core() {
        let mut m = core();
        assert_eq!(m.step(sig(2), secs(0.0)), [Forward(Signal::INT)]);
        assert_eq!(
            m.step(Event::AppExited(130), secs(0.1)),
            [TermLeftovers {
                code: 130,
                spare_group: true
            }]
        );
        let mut m = core();
        assert_eq!(
            m.step(sig(10), secs(0.0)),
            [Forward(Signal::new(10).unwrap())]
        );
        assert_eq!(
            m.step(Event::AppExited(0), secs(0.1)),
            [TermLeftovers {
                code: 0,
                spare_group: false
            }]
        );
    }

    #[test]
    fn drain_writes_file_waits_delay_then_stops_then_kills() {
        run(
            drain(5.0, None, Some(29.0)),
            &[
                (10.0, sig(10), &[Forward(Signal::new(10).unwrap())], None),
                (20.0, sig(15), &[StartDrain(Signal::TERM)], Some(25.0)),
                // Other signals keep flowing during the delay.
                (
                    21.0,
                    sig(1),
                    &[Forward(Signal::new(1).unwrap())],
                    Some(25.0),
                ),
                (24.9, Event::Deadline, &[], Some(25.0)),
                (
                    25.0,
                    Event::Deadline,
                    &[Stop(Signal::TERM, StopReason::DelayOver)],
                    Some(49.0),
                ),
                // Never a second SIGTERM once the app has its stop signal.
                (30.0, sig(15), &[Swallow(Signal::TERM)], Some(49.0)),
                (31.0, sig(2), &[Forward(Signal::INT)], Some(49.0)),
                (
                    49.0,
                    Event::Deadline,
                    &[Kill { app_alive: true }],
                    Some(51.0),
                ),
                (49.1, Event::AppExited(137), &[], Some(51.0)),
                (49.2, Event::LeftoversGone, &[Exit(137)], None),
            ],
        );
    }

    #[test]
    fn stop_signal_overrides_the_trigger() {
        let mut m = drain(0.0, Some(Signal::QUIT), None);
        assert_eq!(
            m.step(sig(15), secs(1.0)),
            [
                StartDrain(Signal::TERM),
                Stop(Signal::QUIT, StopReason::DelayOver)
            ]
        );
        assert_eq!(m.next_deadline(), None);
        assert_eq!(
            m.step(Event::AppExited(0), secs(2.0)),
            [TermLeftovers {
                code: 0,
                spare_group: true
            }]
        );
        assert_eq!(m.next_deadline(), Some(secs(7.0)));
    }

    #[test]
    fn second_drain_signal_or_int_cuts_the_delay_short() {
        for cut in [15, 2] {
            let mut m = drain(10.0, None, Some(20.0));
            assert_eq!(m.step(sig(15), secs(1.0)), [StartDrain(Signal::TERM)]);
            let by = Signal::new(cut).unwrap();
            assert_eq!(
                m.step(sig(cut), secs(2.0)),
                [Stop(Signal::TERM, StopReason::CutShort(by))]
            );
            // The kill deadline still counts from the drain's start.
            assert_eq!(m.next_deadline(), Some(secs(21.0)));
        }
    }

    #[test]
    fn app_exit_during_delay_ends_at_once() {
        let mut m = drain(10.0, None, Some(20.0));
        m.step(sig(15), secs(1.0));
        assert_eq!(
            m.step(Event::AppExited(0), secs(2.0)),
            [TermLeftovers {
                code: 0,
                spare_group: false
            }]
        );
        assert_eq!(m.step(Event::LeftoversGone, secs(2.0)), [Exit(0)]);
    }

    #[test]
    fn leftover_grace_never_passes_the_kill_deadline() {
        let mut m = drain(1.0, None, Some(4.0));
        m.step(sig(15), secs(0.0));
        m.step(Event::Deadline, secs(1.0));
        m.step(Event::AppExited(0), secs(2.0));
        assert_eq!(m.next_deadline(), Some(secs(4.0)));
        assert_eq!(
            m.step(Event::Deadline, secs(4.0)),
            [Kill { app_alive: false }]
        );
        assert_eq!(m.step(Event::Deadline, secs(6.0)), [Exit(0)]);
    }

    #[test]
    fn non_drain_signals_never_start_a_drain() {
        let mut m = drain(5.0, None, Some(10.0));
        for n in [1, 2, 3, 10, 12, 28] {
            let s = Signal::new(n).unwrap();
            assert_eq!(m.step(sig(n), secs(0.0)), [Forward(s)], "{s}");
        }
        assert_eq!(m.next_deadline(), None);
        assert_eq!(m.drain_start(), None);
    }

    #[test]
    fn app_killed_but_never_reaped_exits_137() {
        let mut m = drain(0.0, None, Some(3.0));
        m.step(sig(15), secs(0.0));
        assert_eq!(
            m.step(Event::Deadline, secs(3.0)),
            [Kill { app_alive: true }]
        );
        // LeftoversGone means nothing until the app itself is reaped.
        assert_eq!(m.step(Event::LeftoversGone, secs(3.5)), []);
        assert_eq!(m.step(Event::Deadline, secs(5.0)), [Exit(137)]);
    }

    #[test]
    fn app_exit_is_taken_once() {
        let mut m = core();
        m.step(Event::AppExited(1), secs(0.0));
        assert_eq!(m.step(Event::AppExited(2), secs(0.1)), []);
        assert_eq!(m.step(Event::LeftoversGone, secs(0.2)), [Exit(1)]);
    }
}
