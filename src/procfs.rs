//! What drainit reads from `/proc`, and only when that `/proc` belongs to its
//! own PID namespace.
//!
//! A runtime may start drainit in a new PID namespace without mounting a
//! `/proc` for it (`unshare --pid --fork` without `--mount-proc`): then the
//! `/proc` it sees lists the host's processes under the host's numbers, and
//! signalling a pid read from it would hit whatever process of drainit's own
//! namespace happens to carry that number. So every pid read here is vouched
//! for first: `/proc/self` must name drainit's own pid.

use crate::sys;

/// Whether `/proc` is mounted and shows drainit's own PID namespace.
pub fn is_ours() -> bool {
    std::fs::read_link("/proc/self")
        .ok()
        .and_then(|target| target.to_str()?.parse::<i32>().ok())
        == Some(sys::pid())
}

/// Every process but drainit whose process group is not `pgid`; `None` when
/// `/proc` cannot be trusted (see the module doc) or cannot be read.
pub fn pids_outside_group(pgid: i32) -> Option<Vec<i32>> {
    if !is_ours() {
        return None;
    }
    let me = sys::pid();
    let dir = std::fs::read_dir("/proc").ok()?;
    let pids = dir
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| pgid_of(&s))
                != Some(pgid)
        })
        .collect();
    Some(pids)
}

/// The process group of `pid`, from /proc/PID/stat.
pub fn pgid(pid: i32) -> Option<i32> {
    pgid_of(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The process group from the text of /proc/PID/stat (the comm may hold spaces and parentheses).
fn pgid_of(stat: &str) -> Option<i32> {
    let after_comm = stat.get(stat.rfind(')')?.checked_add(1)?..)?;
    after_comm.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_process_group_from_proc_stat() {
        assert_eq!(pgid_of("42 (sleep) S 1 42 42 0 -1 4194560"), Some(42));
        assert_eq!(pgid_of("7 (a (weird) name) R 1 5 5 0"), Some(5));
        assert_eq!(pgid_of("garbage"), None);
        assert_eq!(pgid_of("1 (x)"), None);
    }

    #[test]
    fn the_test_runners_proc_is_its_own() {
        // cargo test runs in the namespace whose /proc is mounted.
        assert!(is_ours());
    }
}
