//! What `/proc` says about a process: whether it still runs (a zombie does not) and when it
//! started. Used wherever a pid written down earlier is acted on or reported: a pid file or a
//! checkpoint names a process that may have died (and been left unreaped by a parent that never
//! reaps, as some containers' pid 1 do) or whose pid was reused since.

/// A process's state letter and start time (clock ticks after boot), from `/proc/PID/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    /// `R`, `S`, `D`, `T`, `Z` (zombie), `X` (dead), ...
    pub state: char,
    /// Field 22, `starttime`: with the pid, it names one process for the life of the host.
    pub start_time: u64,
}

/// Parses the contents of `/proc/PID/stat`. The command name (field 2) may contain spaces and
/// parentheses, so the fields are counted after its last `)`.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    // After the state (field 3) come fields 4..; starttime is field 22, i.e. the 19th after state.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

/// The process's stat, or `None` if there is no such process (or no `/proc`).
pub fn stat(pid: u32) -> Option<ProcStat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The start time of `pid` if it names a process that has not exited (a zombie has exited).
pub fn running_start_time(pid: u32) -> Option<u64> {
    stat(pid)
        .filter(|s| s.state != 'Z' && s.state != 'X')
        .map(|s| s.start_time)
}

/// True when `pid` names a process that has not exited (a zombie has exited).
pub fn is_running(pid: u32) -> bool {
    running_start_time(pid).is_some()
}

/// The start time of this process.
pub fn own_start_time() -> Option<u64> {
    stat(std::process::id()).map(|s| s.start_time)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_command_name_with_spaces_and_parentheses_does_not_shift_the_fields() {
        let line = "4242 (a (weird) name) Z 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 0 0";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                state: 'Z',
                start_time: 987654
            })
        );
        assert_eq!(parse_stat("garbage"), None);
        assert_eq!(parse_stat("1 (x) S 1 2"), None, "too few fields");
    }

    #[test]
    fn this_process_runs_and_an_exited_child_left_unreaped_does_not() {
        assert!(is_running(std::process::id()));
        assert!(own_start_time().is_some());
        let mut child = std::process::Command::new("true")
            .spawn()
            .expect("spawn true");
        let pid = child.id();
        // Not waited for yet: it exits and stays a zombie, whose pid still "exists" for kill -0.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while stat(pid).is_some_and(|s| s.state != 'Z') {
            assert!(std::time::Instant::now() < deadline, "child never exited");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert!(!is_running(pid), "a zombie is not running");
        child.wait().expect("reap");
        assert!(!is_running(pid));
    }
}
