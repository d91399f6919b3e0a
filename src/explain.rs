//! `drainit --explain`: the shutdown timeline the options give, and the
//! checks made on them, as text. Pure: it reads the validated config only.

use std::fmt::Write;
use std::time::Duration;

use crate::cli::{ESCALATION_MARGIN, KillSource, Launch, show_command};
use crate::time::format_duration;

pub fn timeline(launch: &Launch) -> String {
    let mut out = String::new();
    let t = |d: Duration| format!("t+{}", format_duration(d));
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
    let grace = format_duration(launch.policy.grace);
    let _ = writeln!(out, "command: {command}");

    let Some(drain) = &launch.policy.drain else {
        let _ = writeln!(
            out,
            "no drain option: every signal goes to {target} at once."
        );
        let _ = writeln!(out, "timeline after SIGTERM:");
        let _ = writeln!(out, "  t+0s   SIGTERM, then SIGCONT, to {target}");
        let _ = writeln!(
            out,
            "  then   drainit waits for the app, however long it takes"
        );
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

    let starts = drain.on.to_string();
    let stop = drain.stop_signal.map_or_else(
        || "the signal that started the drain".to_string(),
        |s| s.to_string(),
    );
    let _ = writeln!(out, "drain starts on: {starts}");
    let _ = writeln!(
        out,
        "timeline after {}:",
        drain
            .on
            .iter()
            .next()
            .map(|s| s.to_string())
            .unwrap_or_default()
    );
    match &launch.drain_file {
        Some(path) => {
            let _ = writeln!(
                out,
                "  t+0s   drain file {} written: health checks report unhealthy (503)",
                crate::text::path(path)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  t+0s   drain starts (no --drain-file: nothing tells the health check)"
            );
        }
    }
    if !drain.delay.is_zero() {
        let _ = writeln!(
            out,
            "  t+0s   the app keeps serving for {}; the same signal again, or SIGINT, cuts this short",
            format_duration(drain.delay)
        );
    }
    let _ = writeln!(
        out,
        "  {:<6} {stop}, then SIGCONT, to {target}",
        t(drain.delay)
    );
    match drain.kill_after {
        Some(kill) => {
            let _ = writeln!(
                out,
                "  {:<6} SIGKILL to {target} and, as PID 1, to everything left; drainit exits 137",
                t(kill)
            );
        }
        None => {
            let _ = writeln!(
                out,
                "  then   drainit waits for the app, however long it takes"
            );
        }
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
        drain
            .kill_after
            .map(|k| format!(", never past {}", t(k)))
            .unwrap_or_default()
    );

    let _ = writeln!(out, "checks:");
    let mut checks = Vec::new();
    match (drain.kill_after, launch.kill_source, launch.stop_timeout) {
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
    if let Some(kill) = drain.kill_after {
        checks.push(format!(
            "ok: --drain-delay {} leaves the app {} to stop before SIGKILL",
            format_duration(drain.delay),
            format_duration(kill.saturating_sub(drain.delay))
        ));
    }
    if launch.drain_file.is_some() && drain.delay.is_zero() {
        checks.push(
            "warning: --drain-delay is 0: the load balancer has no time to see the drain file before the app stops"
                .to_string(),
        );
    }
    for line in checks {
        let _ = writeln!(out, "  {line}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drain::{Drain, Policy};
    use crate::signals::{SigSet, Signal};

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
            stop_timeout: stop_timeout.map(Duration::from_secs),
            kill_source: source,
            policy: Policy {
                drain: Some(Drain {
                    on: SigSet::of(&[Signal::TERM]),
                    delay: Duration::from_secs(delay),
                    stop_signal: None,
                    kill_after: kill.map(Duration::from_secs),
                }),
                grace: Duration::from_secs(5),
            },
            listen: None,
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
}
