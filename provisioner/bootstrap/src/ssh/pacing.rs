//! Pacing an upload: how much may wait unconsumed on the far side ([`Pacer`], pure) and the content cut
//! into data messages ([`Pieces`]). Why pacing pays: see [`PACE_LIMIT`].

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::AsyncReadExt;

use super::UploadSource;

/// Read size for streamed files.
pub(super) const CHUNK: usize = 1 << 20;

/// Size of one data message while pacing.
pub(super) const PACE_PIECE: usize = 64 * 1024;

/// Most bytes sent but not yet consumed by the far side's command (to start with). A server
/// buffers what its command has not read yet, up to the whole window it granted (2 MiB for
/// OpenSSH). When many uploads share a host's CPU with the nodes (20 containers on 2 cores), the
/// commands fall behind, every sshd keeps a full window buffered, and its buffer handling (copy,
/// zero, fault in fresh pages) costs ten times the CPU per byte of a single upload: half of all
/// CPU time. Capping the backlog halved sshd's CPU and cut the 20-host benchmark from ~7.3 s to
/// ~4.5 s. One stream moves at most the limit per round trip, so it grows with the connection's
/// round-trip time to keep [`PACE_RATE`] (a 50 ms WAN link gets the whole window: no pacing).
pub(super) const PACE_LIMIT: u64 = 256 * 1024;

/// Bytes per second one paced stream should be able to reach: the limit is at least this times
/// the round-trip time.
pub(super) const PACE_RATE: f64 = 128.0 * 1024.0 * 1024.0;

/// With no window adjust for this long, and none at all at the current limit, the limit doubles
/// (up to the window): a server that adjusts only after consuming more than the limit is never
/// left to trickle.
pub(super) const PACE_STALL: Duration = Duration::from_millis(250);

/// Decides when the next piece may go (see [`PACE_LIMIT`]). Pure: fed what was sent and what
/// the server reported. The window the server granted before anything was sent tells, with the
/// window it reports after each adjust, how much is still unconsumed; without it (a server that
/// does not grant its window the way OpenSSH does) nothing is held back.
#[derive(Debug)]
pub(super) struct Pacer {
    /// The channel's window before anything was sent; `None`: unknown, no pacing.
    granted: Option<u32>,
    limit: u64,
    sent: u64,
    /// Outstanding as of the last window adjust, and `sent` at that moment.
    base: u64,
    sent_at_base: u64,
    /// The server has adjusted the window since `limit` was last raised: it works with this
    /// limit, and a stall means a slow far side, not one that waits for more data.
    adjusts_at_limit: bool,
}

impl Pacer {
    pub(super) fn new(granted: Option<u32>, rtt: Duration) -> Pacer {
        // Whole bytes; a float-to-int cast saturates.
        let for_rtt = (PACE_RATE * rtt.as_secs_f64()) as u64;
        let cap = granted.map_or(u64::MAX, u64::from).max(PACE_LIMIT);
        Pacer {
            granted,
            limit: for_rtt.clamp(PACE_LIMIT, cap),
            sent: 0,
            base: 0,
            sent_at_base: 0,
            adjusts_at_limit: false,
        }
    }

    /// Sent but not yet consumed by the far side, as far as we know.
    pub(super) fn outstanding(&self) -> u64 {
        self.base + (self.sent - self.sent_at_base)
    }

    pub(super) fn may_send(&self) -> bool {
        self.granted.is_none() || self.outstanding() < self.limit
    }

    pub(super) fn sent(&mut self, n: usize) {
        self.sent += n as u64;
    }

    /// The server's window after an adjust: granted minus that is what it has not consumed.
    pub(super) fn adjusted(&mut self, window: u32) {
        let granted = self.granted.unwrap_or(window);
        self.base = u64::from(granted.saturating_sub(window));
        self.sent_at_base = self.sent;
        self.adjusts_at_limit = true;
    }

    /// No adjust for [`PACE_STALL`]. If none came at this limit at all, this server adjusts
    /// only after consuming more than the limit: allow it a larger backlog (up to its window)
    /// rather than trickling. If it did adjust at this limit, its far side is just slow (a
    /// busy host): wait for it, a larger backlog would only cost it more CPU.
    pub(super) fn stalled(&mut self) {
        if self.adjusts_at_limit {
            return;
        }
        let cap = self.granted.map_or(u64::MAX, u64::from).max(PACE_LIMIT);
        self.limit = (self.limit * 2).min(cap);
    }
}

/// The content of an upload as data messages of at most [`PACE_PIECE`] bytes. Files are read
/// in [`CHUNK`] buffers (one blocking-pool round trip each) and split without copying.
pub(super) enum Pieces {
    Bytes(bytes::Bytes),
    File {
        file: tokio::fs::File,
        path: PathBuf,
        buf: bytes::Bytes,
        done: bool,
    },
}

impl Pieces {
    pub(super) async fn open(src: &UploadSource) -> Result<Pieces, String> {
        Ok(match src {
            UploadSource::Bytes(b) => Pieces::Bytes(bytes::Bytes::from(b.clone())),
            UploadSource::File(p) => Pieces::File {
                file: tokio::fs::File::open(p)
                    .await
                    .map_err(|err| format!("open {}: {err}", p.display()))?,
                path: p.clone(),
                buf: bytes::Bytes::new(),
                done: false,
            },
        })
    }

    pub(super) async fn next(&mut self) -> Result<Option<bytes::Bytes>, String> {
        let buf = match self {
            Pieces::Bytes(b) => b,
            Pieces::File {
                file,
                path,
                buf,
                done,
            } => {
                if buf.is_empty() && !*done {
                    let mut fresh = vec![0u8; CHUNK];
                    let mut filled = 0;
                    while filled < CHUNK {
                        let n = file
                            .read(&mut fresh[filled..])
                            .await
                            .map_err(|err| format!("read {}: {err}", path.display()))?;
                        if n == 0 {
                            *done = true;
                            break;
                        }
                        filled += n;
                    }
                    fresh.truncate(filled);
                    *buf = bytes::Bytes::from(fresh);
                }
                buf
            }
        };
        if buf.is_empty() {
            return Ok(None);
        }
        Ok(Some(buf.split_to(PACE_PIECE.min(buf.len()))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u32 = 1 << 20;
    const LAN: Duration = Duration::from_micros(300);

    #[test]
    fn a_long_round_trip_gets_a_larger_backlog_and_a_wan_link_the_whole_window() {
        let limit = |rtt| Pacer::new(Some(2 * MIB), rtt).limit;
        assert_eq!(limit(Duration::ZERO), PACE_LIMIT);
        assert_eq!(limit(Duration::from_millis(1)), PACE_LIMIT);
        // 1/128 s at 128 MiB/s.
        assert_eq!(limit(Duration::from_nanos(7_812_500)), u64::from(MIB));
        assert_eq!(
            limit(Duration::from_millis(50)),
            u64::from(2 * MIB),
            "capped at the window"
        );
    }

    #[test]
    fn pacing_keeps_at_most_the_limit_unconsumed() {
        let mut p = Pacer::new(Some(2 * MIB), LAN);
        let mut pieces = 0;
        while p.may_send() {
            p.sent(PACE_PIECE);
            pieces += 1;
        }
        assert_eq!(p.outstanding(), PACE_LIMIT, "{pieces} pieces, then wait");
        // The server consumed all but 64 KiB: its window is back to granted - 64 KiB.
        p.adjusted(2 * MIB - 64 * 1024);
        assert!(p.may_send());
        p.sent(PACE_PIECE);
        p.sent(PACE_PIECE);
        p.sent(PACE_PIECE);
        assert_eq!(p.outstanding(), PACE_LIMIT);
        assert!(!p.may_send());
    }

    #[test]
    fn a_server_that_adjusts_late_gets_a_larger_backlog_up_to_its_window() {
        let mut p = Pacer::new(Some(MIB), LAN);
        while p.may_send() {
            p.sent(PACE_PIECE);
        }
        p.stalled();
        assert!(p.may_send(), "limit doubled");
        for _ in 0..10 {
            p.stalled();
        }
        while p.may_send() {
            p.sent(PACE_PIECE);
        }
        assert_eq!(p.outstanding(), u64::from(MIB), "never beyond the window");
    }

    #[test]
    fn a_server_that_adjusts_at_this_limit_is_waited_for_when_it_is_slow() {
        let mut p = Pacer::new(Some(2 * MIB), LAN);
        while p.may_send() {
            p.sent(PACE_PIECE);
        }
        p.adjusted(2 * MIB - 128 * 1024);
        while p.may_send() {
            p.sent(PACE_PIECE);
        }
        for _ in 0..10 {
            p.stalled();
        }
        assert!(!p.may_send(), "still at most {PACE_LIMIT} outstanding");
        assert_eq!(p.outstanding(), PACE_LIMIT);
    }

    #[test]
    fn without_a_known_window_nothing_is_held_back() {
        let mut p = Pacer::new(None, LAN);
        for _ in 0..1000 {
            assert!(p.may_send());
            p.sent(PACE_PIECE);
        }
    }
}
