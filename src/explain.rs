//! `drainit --explain`: the shutdown timeline the options give, and the
//! checks made on them, as text. Pure: it steps the real drain `Machine` on a
//! synthetic clock (a drain signal at t=0, then each deadline it asks for) and
//! renders what it does, so the text cannot drift from what a run does.

use std::fmt::Write;
use std::time::Duration;

use crate::actions;
use crate::cli::{ESCALATION_MARGIN, KillSource, Launch, show_command};
use crate::drain::{Action, Event, Machine, Policy};
use crate::signals::Signal;
use crate::time::format_duration;

/// More steps than any timeline takes (start, stop, kill, exit): a guard, not a limit.
const MAX_STEPS: usize = 16;

/// What the machine did after a synthetic signal at t=0, with the synthetic
/// time of each action (which is also the time since the drain started).
struct Timeline {
    actions: Vec<(Duration, Action)>,
    /// After the last action the machine asked for no further deadline: it waits for the app.
    waits: bool,
}

/// Steps the machine: `signal` at t=0, then every deadline it asks for.
fn after_signal(policy: &Policy, signal: Signal) -> Timeline {
    let mut machine = Machine::new(policy);
    let mut first = machine.step(Event::Signal(signal), Duration::ZERO);
    if first.contains(&Action::Sample) {
        first.retain(|a| *a != Action::Sample);
        first.extend(machine.step(Event::Blind, Duration::ZERO));
    }
    let mut actions: Vec<(Duration, Action)> =
        first.into_iter().map(|a| (Duration::ZERO, a)).collect();
    let mut now = Duration::ZERO;
    for _ in 0..MAX_STEPS {
        let Some(due) = machine.next_deadline() else {
            break;
        };
        // The synthetic clock never runs backwards.
        now = now.max(due);
        let mut stepped = machine.step(Event::Tick, now);
        if stepped.contains(&Action::Sample) {
            // No traffic to look at here: the timeline shows the maximum.
            stepped.retain(|a| *a != Action::Sample);
            stepped.extend(machine.step(Event::Blind, now));
        }
        let exited = stepped.iter().any(|a| matches!(a, Action::Exit(_)));
        actions.extend(stepped.into_iter().map(|a| (now, a)));
        if exited {
            return Timeline {
                actions,
                waits: false,
            };
        }
    }
    Timeline {
        actions,
        waits: machine.next_deadline().is_none(),
    }
}

/// How long the processes an app leaves get before SIGKILL: a synthetic
/// `AppExited` at t=0, before any signal.
fn leftover_wait(policy: &Policy) -> Duration {
    Machine::new(policy)
        .step(Event::AppExited(0), Duration::ZERO)
        .into_iter()
        .find_map(|a| match a {
            Action::TermLeftovers { wait, .. } => Some(wait),
            _ => None,
        })
        .unwrap_or_default()
}

fn t(d: Duration) -> String {
    format!("t+{}", format_duration(d))
}

/// `t+0s   /ready on ADDR answers 503 ...`, with `--health-listen`.
fn listener_line(out: &mut String, launch: &Launch, at: &str) {
    if let Some(listen) = &launch.listen {
        let _ = writeln!(
            out,
            "  {at:<6} /ready on {} answers 503 (draining); /live answers 200 until the app exits",
            listen.address
        );
    }
}

/// `t+0s   on-drain: ...` and `t+0s   on-drain-post: ...`, when a drain starts.
fn action_lines(out: &mut String, launch: &Launch, at: Duration, kill_at: Option<Duration>) {
    let actions = &launch.actions;
    if let Some(command) = &actions.on_drain {
        let until = match actions::kill_at(kill_at) {
            Some(k) => format!("SIGKILL to its process group at {} if still running", t(k)),
            None => "it ends when the app does".to_string(),
        };
        let _ = writeln!(
            out,
            "  {:<6} on-drain: {} starts, in a process group of its own, output on stderr; {until}",
            t(at),
            command.shown()
        );
    }
    if let Some(url) = &actions.post {
        let _ = writeln!(
            out,
            "  {:<6} on-drain-post: POST {url}, for at most {}",
            t(at),
            format_duration(actions::post_timeout(kill_at, at))
        );
    }
}

/// The stop command, run instead of the stop signal.
fn stop_command_line(
    out: &mut String,
    launch: &Launch,
    (at, kill_at): (Duration, Option<Duration>),
    signal: Signal,
    target: &str,
) {
    if let Some(k) = actions::kill_at(kill_at).filter(|k| at >= *k) {
        let _ = writeln!(
            out,
            "  {:<6} {signal}{}, to {target}: the delay ends past the actions' SIGKILL at {}, no time for the stop command",
            t(at),
            signal.then_cont(),
            t(k)
        );
    } else if let Some(command) = &launch.actions.stop_command {
        let _ = writeln!(
            out,
            "  {:<6} stop command: {} instead of the stop signal; if it cannot run or fails, {signal}{}, to {target}",
            t(at),
            command.shown(),
            signal.then_cont()
        );
    }
}

/// `t+28.5s on-drain, stop command: SIGKILL ...`, before the kill deadline.
fn actions_killed_line(out: &mut String, launch: &Launch, kill_at: Option<Duration>) {
    let actions = &launch.actions;
    let names: Vec<&str> = [
        actions.on_drain.as_ref().map(|_| "on-drain"),
        actions.stop_command.as_ref().map(|_| "stop command"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if let (false, Some(at)) = (names.is_empty(), actions::kill_at(kill_at)) {
        let _ = writeln!(
            out,
            "  {:<6} {}: SIGKILL to the process group of each that still runs",
            t(at),
            names.join(", ")
        );
    }
}

/// The lines for the moment the drain is told: the listener's `/ready` and the drain file.
fn announce(out: &mut String, launch: &Launch, at: Duration) {
    listener_line(out, launch, &t(at));
    match &launch.drain_file {
        Some(path) => {
            let _ = writeln!(
                out,
                "  {:<6} drain file {} written: health checks report unhealthy (503)",
                t(at),
                crate::text::path(path)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  {:<6} drain starts (no --drain-file: nothing tells the health check)",
                t(at)
            );
        }
    }
}

pub fn timeline(launch: &Launch) -> String {
    let mut out = String::new();
    let command = if launch.command.is_empty() {
        "(no command given)".to_string()
    } else {
        show_command(&launch.command)
    };
    let target = if launch.group {
        "the app's process group"
    } else {
        "the app (--no-group: its pid only)"
    };
    let policy = &launch.policy;
    let grace = format_duration(leftover_wait(policy));
    let waits_line = "  then   drainit waits for the app, however long it takes";
    let _ = writeln!(out, "command: {command}");

    let Some(drain) = &policy.drain else {
        let _ = writeln!(
            out,
            "no drain option: every signal goes to {target} at once."
        );
        let _ = writeln!(out, "timeline after {}:", Signal::TERM);
        let run = after_signal(policy, Signal::TERM);
        for (at, action) in &run.actions {
            if let Action::Stop { signal, .. } = action {
                listener_line(&mut out, launch, &t(*at));
                let _ = writeln!(
                    out,
                    "  {:<6} {signal}{}, to {target}",
                    t(*at),
                    signal.then_cont()
                );
            }
        }
        if run.waits {
            let _ = writeln!(out, "{waits_line}");
        }
        let _ = writeln!(
            out,
            "if the app exits: what it left behind gets SIGTERM and up to {grace}, then SIGKILL; drainit exits with the app's code"
        );
        let _ = writeln!(out, "checks:");
        let _ = writeln!(
            out,
            "  warning: nothing escalates before the orchestrator's SIGKILL, which comes with nothing logged; set --stop-timeout"
        );
        return out;
    };

    let first = drain.on.iter().next();
    let _ = writeln!(out, "drain starts on: {}", drain.on);
    let _ = writeln!(
        out,
        "timeline after {}:",
        first.map(|s| s.to_string()).unwrap_or_default()
    );
    let run = after_signal(policy, first.unwrap_or(Signal::TERM));
    let mut delay = Duration::ZERO;
    let mut kill_at = None;
    let mut stop_at = None;
    let mut killed_at = None;
    for (at, action) in &run.actions {
        let at = *at;
        match *action {
            Action::StartDrain {
                delay: d,
                kill_at: k,
                ..
            } => {
                (delay, kill_at) = (d, k);
                if drain.ready_fail_after.is_zero() {
                    announce(&mut out, launch, at);
                } else {
                    let _ = writeln!(
                        out,
                        "  {:<6} drain starts; /ready and the drain file say nothing yet (--ready-fail-after {})",
                        t(at),
                        format_duration(drain.ready_fail_after)
                    );
                }
                if let Some(adaptive) = &drain.adaptive {
                    let _ = writeln!(
                        out,
                        "  {:<6} adaptive: the stop signal goes once at least {} has passed (--drain-min), no new connection has reached the app's ports for {} (--drain-quiet) and none carries a request; at the latest at {} (--drain-delay)",
                        t(at),
                        format_duration(adaptive.min),
                        format_duration(adaptive.quiet),
                        t(d)
                    );
                }
                action_lines(&mut out, launch, at, k);
                if !d.is_zero() {
                    let _ = writeln!(
                        out,
                        "  {:<6} the app keeps serving for {}{}; the same signal again, or SIGINT, cuts this short",
                        t(at),
                        if drain.adaptive.is_some() {
                            "at most "
                        } else {
                            ""
                        },
                        format_duration(d)
                    );
                }
            }
            Action::Stop { signal, .. } if launch.actions.stop_command.is_some() => {
                stop_at = Some(at);
                stop_command_line(&mut out, launch, (at, kill_at), signal, target);
            }
            Action::Stop { signal, .. } => {
                stop_at = Some(at);
                let stop = match drain.stop_signal {
                    None => "the signal that started the drain".to_string(),
                    Some(_) => signal.to_string(),
                };
                let _ = writeln!(
                    out,
                    "  {:<6} {stop}{}, to {target}",
                    t(at),
                    signal.then_cont()
                );
            }
            Action::Kill { exit, .. } => {
                killed_at = Some(at);
                actions_killed_line(&mut out, launch, kill_at);
                let _ = writeln!(
                    out,
                    "  {:<6} SIGKILL to {target} and, as PID 1, to everything left; drainit exits {exit}",
                    t(at)
                );
            }
            Action::Announce { .. } => announce(&mut out, launch, at),
            // The exit is told on the SIGKILL line; nothing else follows a drain signal.
            Action::Sample
            | Action::Exit(_)
            | Action::Forward(_)
            | Action::Swallow { .. }
            | Action::TermLeftovers { .. } => {}
        }
    }
    if run.waits {
        let _ = writeln!(out, "{waits_line}");
    }
    if let Some(stop_timeout) = launch.stop_timeout {
        let _ = writeln!(
            out,
            "  {:<6} the orchestrator's SIGKILL (--stop-timeout)",
            t(stop_timeout)
        );
    }
    let _ = writeln!(
        out,
        "if the app exits first: what it left behind gets up to {grace} (SIGTERM unless it already had a stop signal){}, then SIGKILL; drainit exits with the app's code",
        kill_at
            .map(|k| format!(", never past {}", t(k)))
            .unwrap_or_default()
    );
    if launch.actions.on_drain.is_some() || launch.actions.stop_command.is_some() {
        let _ = writeln!(
            out,
            "drain actions end with the app: once it has exited, the process group of each that still runs gets SIGKILL"
        );
    }

    let _ = writeln!(out, "checks:");
    let mut checks = Vec::new();
    match (kill_at, launch.kill_source, launch.stop_timeout) {
        (Some(kill), Some(KillSource::StopTimeout), Some(stop)) => checks.push(format!(
            "ok: SIGKILL at {} is {} before the orchestrator's at {} (--stop-timeout)",
            t(kill),
            format_duration(ESCALATION_MARGIN),
            t(stop)
        )),
        (Some(kill), _, Some(stop)) => checks.push(format!(
            "ok: --kill-after {} is shorter than --stop-timeout {}",
            format_duration(kill),
            format_duration(stop)
        )),
        (Some(kill), _, None) => checks.push(format!(
            "note: no --stop-timeout: make sure the orchestrator waits longer than {} before its SIGKILL",
            format_duration(kill)
        )),
        (None, _, _) => checks.push(
            "warning: no --kill-after or --stop-timeout: if the app hangs, the orchestrator's SIGKILL comes with nothing logged"
                .to_string(),
        ),
    }
    if let (Some(stop), Some(kill)) = (stop_at, killed_at) {
        checks.push(format!(
            "ok: --drain-delay {} leaves the app {} to stop before SIGKILL",
            format_duration(delay),
            format_duration(kill.saturating_sub(stop))
        ));
    }
    if let Some(path) = &launch.drain_file {
        // main.rs runs preflight::check before this: a directory that takes
        // no new file is refused (125) and nothing is explained.
        checks.push(format!(
            "ok: drainit can create {} (its directory was checked just now, as drainit's user)",
            crate::text::path(path)
        ));
    }
    if launch.drain_file.is_some() && delay.is_zero() {
        checks.push(
            "warning: --drain-delay is 0: the load balancer has no time to see the drain file before the app stops"
                .to_string(),
        );
    }
    if delay.is_zero() && (launch.actions.on_drain.is_some() || launch.actions.post.is_some()) {
        checks.push(
            "warning: --drain-delay is 0: the stop signal goes as the drain actions start, and they end when the app does"
                .to_string(),
        );
    }
    for line in checks {
        let _ = writeln!(out, "  {line}");
    }
    out
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects, clippy::indexing_slicing)]
mod tests {
    use std::ffi::OsString;

    use super::*;
    use crate::cli::{Mode, Parsed, parse};
    use crate::drain::Drain;
    use crate::signals::SigSet;

    fn launch(
        delay: u64,
        kill: Option<u64>,
        stop_timeout: Option<u64>,
        source: Option<KillSource>,
    ) -> Launch {
        Launch {
            command: vec!["node".into(), "server.js".into()],
            group: true,
            drain_file: Some("/tmp/draining".into()),
            drain_file_from_var: false,
            stop_timeout: stop_timeout.map(Duration::from_secs),
            kill_source: source,
            policy: Policy {
                drain: Some(Drain {
                    on: SigSet::of(&[Signal::TERM]),
                    delay: Duration::from_secs(delay),
                    stop_signal: None,
                    kill_after: kill.map(Duration::from_secs),
                    adaptive: None,
                    ready_fail_after: Duration::ZERO,
                }),
                grace: Duration::from_secs(5),
            },
            listen: None,
            actions: Default::default(),
        }
    }

    #[test]
    fn shows_the_ecs_timeline() {
        let text = timeline(&launch(
            5,
            Some(29),
            Some(30),
            Some(KillSource::StopTimeout),
        ));
        for line in [
            "t+0s   drain file /tmp/draining written",
            "t+5s   the signal that started the drain, then SIGCONT",
            "t+29s  SIGKILL",
            "t+30s  the orchestrator's SIGKILL",
            "ok: SIGKILL at t+29s is 1s before the orchestrator's at t+30s",
        ] {
            assert!(text.contains(line), "missing '{line}' in:\n{text}");
        }
    }

    #[test]
    fn warns_without_a_kill_deadline() {
        let text = timeline(&launch(0, None, None, None));
        assert!(
            text.contains("warning: no --kill-after or --stop-timeout"),
            "{text}"
        );
        assert!(text.contains("warning: --drain-delay is 0"), "{text}");
    }

    #[test]
    fn huge_durations_explain_without_overflow() {
        let mut l = launch(0, None, None, None);
        l.policy.grace = Duration::MAX;
        if let Some(d) = l.policy.drain.as_mut() {
            d.delay = Duration::MAX - Duration::from_secs(1);
            d.kill_after = Some(Duration::MAX);
        }
        let text = timeline(&l);
        assert!(
            text.contains("SIGKILL to the app's process group"),
            "{text}"
        );
    }

    fn explain_launch(args: &[&str]) -> Launch {
        let args: Vec<OsString> = ["drainit", "--explain"]
            .iter()
            .chain(args)
            .map(OsString::from)
            .collect();
        match parse(args.clone(), &crate::cli::Env(&[])) {
            Ok(Parsed::Config(c)) => match c.mode {
                Mode::Explain(l) => l,
                other => panic!("{other:?}"),
            },
            Ok(Parsed::Print(p)) => panic!("{p}"),
            Err(e) => panic!("{args:?}: {e}"),
        }
    }

    #[test]
    fn shows_the_drain_actions_on_the_timeline() {
        let text = timeline(&explain_launch(&[
            "--drain-delay",
            "5s",
            "--stop-timeout",
            "30s",
            "--stop-signal",
            "QUIT",
            "--on-drain",
            "sh -c 'curl -X POST localhost:8500/drain'",
            "--on-drain-post",
            "http://127.0.0.1:9901/drain_listeners",
            "--stop-command",
            "nginx -s quit",
        ]));
        for line in [
            "  t+0s   on-drain: sh -c 'curl -X POST localhost:8500/drain' starts, in a process group of its own, output on stderr; SIGKILL to its process group at t+28.5s if still running",
            "  t+0s   on-drain-post: POST http://127.0.0.1:9901/drain_listeners, for at most 10s",
            "  t+5s   stop command: nginx -s quit instead of the stop signal; if it cannot run or fails, SIGQUIT, then SIGCONT, to the app's process group",
            "  t+28.5s on-drain, stop command: SIGKILL to the process group of each that still runs",
            "  t+29s  SIGKILL to the app's process group",
            "drain actions end with the app",
        ] {
            assert!(text.contains(line), "missing '{line}' in:\n{text}");
        }
        let text = timeline(&explain_launch(&["--on-drain", "true"]));
        assert!(
            text.contains("on-drain: true starts, in a process group of its own, output on stderr; it ends when the app does"),
            "{text}"
        );
        assert!(!text.contains("stop command"), "{text}");
        assert!(
            text.contains(
                "warning: --drain-delay is 0: the stop signal goes as the drain actions start"
            ),
            "{text}"
        );
        let text = timeline(&explain_launch(&[
            "--drain-delay",
            "900ms",
            "--kill-after",
            "1s",
            "--stop-command",
            "nginx -s quit",
        ]));
        assert!(
            text.contains("  t+900ms SIGTERM, then SIGCONT, to the app's process group: the delay ends past the actions' SIGKILL at t+500ms, no time for the stop command"),
            "{text}"
        );
    }

    const TICK: Duration = Duration::from_millis(1);

    /// A run as the supervisor would make it, on a clock sampled every
    /// millisecond (not at the deadlines `--explain` jumps to): `signal` at
    /// t=0, the app exiting at `app_exits` if given, a `Tick` at every sample.
    fn sampled_run(
        policy: &Policy,
        signal: Option<Signal>,
        app_exits: Option<Duration>,
        until: Duration,
    ) -> Vec<(Duration, Action)> {
        let mut m = Machine::new(policy);
        let mut seen = Vec::new();
        let mut now = Duration::ZERO;
        if let Some(s) = signal {
            seen.extend(m.step(Event::Signal(s), now).into_iter().map(|a| (now, a)));
        }
        while now <= until {
            if app_exits == Some(now) {
                seen.extend(
                    m.step(Event::AppExited(0), now)
                        .into_iter()
                        .map(|a| (now, a)),
                );
            }
            seen.extend(m.step(Event::Tick, now).into_iter().map(|a| (now, a)));
            if seen.iter().any(|(_, a)| matches!(a, Action::Exit(_))) {
                break;
            }
            now += TICK;
        }
        seen
    }

    /// The lines of the timeline that say what happens at a time ("  t+5s   ...").
    fn timed_lines(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| l.starts_with("  t+") && !l.contains("the orchestrator's SIGKILL"))
            .collect()
    }

    #[test]
    fn explain_and_a_run_agree() {
        let table: &[&[&str]] = &[
            &[],
            &["--no-group"],
            &["--grace", "0"],
            &["--grace", "1500ms", "--no-group"],
            &["--drain-file", "/tmp/draining"],
            &[
                "--drain-file",
                "/tmp/draining",
                "--drain-delay",
                "5s",
                "--stop-timeout",
                "30s",
            ],
            &["--drain-delay", "5s"],
            &["--drain-delay", "0"],
            &[
                "--drain-file",
                "/tmp/d",
                "--drain-delay",
                "0",
                "--kill-after",
                "3s",
            ],
            &["--stop-signal", "QUIT"],
            &[
                "--stop-signal",
                "QUIT",
                "--drain-delay",
                "2.5s",
                "--kill-after",
                "10s",
            ],
            &["--kill-after", "10s", "--stop-timeout", "30s"],
            &["--kill-after", "1500ms", "--drain-delay", "750ms"],
            &["--stop-timeout", "2s"],
            &["--drain-on", "USR1"],
            &[
                "--drain-on",
                "USR1,HUP,TERM",
                "--drain-delay",
                "3s",
                "--kill-after",
                "1m",
            ],
            &[
                "--drain-on",
                "RTMIN+2",
                "--stop-signal",
                "TERM",
                "--kill-after",
                "4s",
            ],
            &[
                "--grace",
                "30s",
                "--drain-delay",
                "5s",
                "--kill-after",
                "20s",
            ],
            &["--drain-delay", "0.001", "--kill-after", "0.002"],
        ];
        for args in table {
            let launch = explain_launch(args);
            let text = timeline(&launch);
            let policy = &launch.policy;
            let trigger = policy
                .drain
                .as_ref()
                .and_then(|d| d.on.iter().next())
                .unwrap_or(Signal::TERM);
            let horizon = Duration::from_secs(90);
            let run = sampled_run(policy, Some(trigger), None, horizon);
            let lines = timed_lines(&text);
            let mut said = 0;
            let mut killed = false;
            for (at, action) in &run {
                let prefix = format!("  {:<6} ", t(*at));
                let has = |what: &str| {
                    lines
                        .iter()
                        .any(|l| l.starts_with(&prefix) && l.contains(what))
                };
                match action {
                    Action::StartDrain { delay, .. } => {
                        assert!(has("drain "), "{args:?}: no start at {prefix:?}:\n{text}");
                        said += if delay.is_zero() { 1 } else { 2 };
                        assert_eq!(has("keeps serving"), !delay.is_zero(), "{args:?}:\n{text}");
                    }
                    Action::Stop { signal, .. } => {
                        let named = policy
                            .drain
                            .as_ref()
                            .is_some_and(|d| d.stop_signal.is_none());
                        let what = if named {
                            "the signal that started the drain".to_string()
                        } else {
                            signal.to_string()
                        };
                        assert!(
                            has(&format!("{what}{}", signal.then_cont())),
                            "{args:?}: no {what} at {prefix:?}:\n{text}"
                        );
                        said += 1;
                    }
                    Action::Kill { exit, .. } => {
                        assert!(
                            has("SIGKILL to ") && has(&format!("drainit exits {exit}")),
                            "{args:?}: no SIGKILL at {prefix:?}:\n{text}"
                        );
                        said += 1;
                        killed = true;
                    }
                    Action::Exit(_) => {}
                    other => panic!("{args:?}: {other:?} after a drain signal alone"),
                }
            }
            // Nothing more in the explanation than the run did.
            assert_eq!(lines.len(), said, "{args:?}: {run:?}\n{text}");
            assert_eq!(
                text.contains("then   drainit waits for the app"),
                !killed,
                "{args:?}:\n{text}"
            );

            // The app exits before any signal: what it left gets the grace the text says.
            let exits = Duration::from_millis(500);
            let run = sampled_run(policy, None, Some(exits), horizon);
            let kill = run
                .iter()
                .find_map(|(at, a)| matches!(a, Action::Kill { .. }).then_some(*at))
                .unwrap_or_else(|| panic!("{args:?}: no SIGKILL for the leftovers: {run:?}"));
            let grace = format!("up to {}", format_duration(kill - exits));
            assert!(
                text.contains(&format!("{grace},")) || text.contains(&format!("{grace} (")),
                "{args:?}: no '{grace}' in:\n{text}"
            );

            // The app exits during the drain: never past the kill deadline the text says.
            if let Some(k) = policy.drain.as_ref().and_then(|d| d.kill_after) {
                let exits = k.saturating_sub(TICK);
                let run = sampled_run(policy, Some(trigger), Some(exits), horizon);
                let kill = run
                    .iter()
                    .find_map(|(at, a)| matches!(a, Action::Kill { .. }).then_some(*at));
                assert_eq!(kill, Some(k), "{args:?}: {run:?}");
                let never = format!(", never past {}, ", t(k));
                assert!(text.contains(&never), "{args:?}: no '{never}' in:\n{text}");
            }
        }
    }
}
