//! Which master the agent talks to: every configured master, the last known leader first, and
//! which `307 Location` it may follow. Pure (no I/O), so that the rules are unit-tested.
//!
//! A follower answers `307` with the leader's URL. The agent follows it only to a master it was
//! configured with (same host and port): its credential goes to the masters of its cluster and
//! nowhere else, whatever a (compromised or misconfigured) master answers. The URL it then uses is
//! the configured one, so a Location cannot downgrade `https` to `http` either.

/// Parses `--master` values: each may be a comma-separated list; `http://` is assumed where no
/// scheme is given; a trailing `/` is dropped; duplicates are dropped (first one kept).
/// Errors name the value and what is valid.
pub fn parse_masters<S: AsRef<str>>(given: &[S]) -> Result<Vec<String>, String> {
    let mut out: Vec<String> = Vec::new();
    for value in given {
        for part in value.as_ref().split(',') {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            let url = normalise(part);
            if host_port(&url).is_none() {
                return Err(format!(
                    "master {part:?} is not a URL with a host (e.g. https://10.0.0.1:5050)"
                ));
            }
            if !out.contains(&url) {
                out.push(url);
            }
        }
    }
    if out.is_empty() {
        return Err(
            "no master URL given: --master (repeatable or comma-separated) or the config's `masters`"
                .into(),
        );
    }
    Ok(out)
}

/// `http://` when no scheme is given, no trailing `/`.
pub fn normalise(url: &str) -> String {
    let url = url.trim();
    let url = if url.starts_with("http://") || url.starts_with("https://") {
        url.to_string()
    } else {
        format!("http://{url}")
    };
    url.trim_end_matches('/').to_string()
}

/// `host:port` of a URL (the scheme's default port when none is written); `None` if unparsable.
pub fn host_port(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?;
    let port = u.port_or_known_default()?;
    Some(format!("{host}:{port}").to_ascii_lowercase())
}

/// The configured masters and which one is believed to lead.
#[derive(Clone, Debug)]
pub struct Masters {
    urls: Vec<String>,
    keys: Vec<Option<String>>,
    leader: usize,
}

impl Masters {
    /// `urls` as [`parse_masters`] returns them (at least one).
    pub fn new(urls: Vec<String>) -> Self {
        let keys = urls.iter().map(|u| host_port(u)).collect();
        Masters {
            urls,
            keys,
            leader: 0,
        }
    }

    /// The believed leader's base URL.
    pub fn leader(&self) -> &str {
        self.url(self.leader)
    }

    /// The believed leader's index.
    pub fn leader_index(&self) -> usize {
        self.leader
    }

    /// The base URL of master `i` (empty when none is configured; calls then fail and say so).
    pub fn url(&self, i: usize) -> &str {
        self.urls.get(i).map(String::as_str).unwrap_or_default()
    }

    /// How many masters are configured.
    pub fn len(&self) -> usize {
        self.urls.len()
    }

    /// Whether none is (never, from [`parse_masters`]).
    pub fn is_empty(&self) -> bool {
        self.urls.is_empty()
    }

    /// Remembers master `i` as the leader (tried first from now on).
    pub fn set_leader(&mut self, i: usize) {
        if i < self.urls.len() {
            self.leader = i;
        }
    }

    /// The order to try the masters in: the believed leader first, then the others as configured.
    pub fn order(&self) -> Vec<usize> {
        std::iter::once(self.leader)
            .chain((0..self.urls.len()).filter(|i| *i != self.leader))
            .filter(|i| *i < self.urls.len())
            .collect()
    }

    /// The configured master a `307 Location` (absolute, or relative to master `from`) names, or
    /// why it is not followed.
    pub fn follow(&self, from: usize, location: &str) -> Result<usize, String> {
        let base = reqwest::Url::parse(self.url(from))
            .map_err(|e| format!("master {} is not a URL: {e}", self.url(from)))?;
        let target = base
            .join(location)
            .map_err(|e| format!("redirect to {location:?} is not a URL: {e}"))?;
        let key = format!(
            "{}:{}",
            target.host_str().unwrap_or_default(),
            target.port_or_known_default().unwrap_or_default()
        )
        .to_ascii_lowercase();
        self.keys
            .iter()
            .position(|k| k.as_deref() == Some(key.as_str()))
            .ok_or_else(|| {
                format!(
                    "master {} redirected to {location}, which is not one of the configured masters: not followed (the credential stays within the cluster)",
                    self.url(from)
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn three() -> Masters {
        Masters::new(
            parse_masters(&[
                "https://10.0.0.1:5050,https://10.0.0.2:5050",
                "10.0.0.3:5050/",
            ])
            .unwrap(),
        )
    }

    #[test]
    fn masters_may_be_repeated_or_comma_separated_and_are_normalised() {
        let m = parse_masters(&[" a:1 , b:2", "a:1", "https://c:3/"]).unwrap();
        assert_eq!(m, vec!["http://a:1", "http://b:2", "https://c:3"]);
    }

    #[test]
    fn no_master_or_a_hostless_one_is_refused_with_the_reason() {
        let e = parse_masters::<&str>(&[]).unwrap_err();
        assert!(e.contains("--master"), "{e}");
        let e = parse_masters(&[" , "]).unwrap_err();
        assert!(e.contains("no master URL"), "{e}");
        let e = parse_masters(&["http://"]).unwrap_err();
        assert!(e.contains("\"http://\""), "{e}");
    }

    #[test]
    fn the_believed_leader_is_tried_first_then_the_others_in_order() {
        let mut m = three();
        assert_eq!(m.order(), vec![0, 1, 2]);
        m.set_leader(2);
        assert_eq!(m.order(), vec![2, 0, 1]);
        assert_eq!(m.leader(), "http://10.0.0.3:5050");
        m.set_leader(7);
        assert_eq!(m.order(), vec![2, 0, 1], "an unknown index changes nothing");
    }

    #[test]
    fn a_redirect_is_followed_only_to_a_configured_master() {
        let m = three();
        assert_eq!(
            m.follow(0, "https://10.0.0.2:5050/internal/v1/agents/register"),
            Ok(1)
        );
        // The scheme's default port counts as written.
        let d = Masters::new(parse_masters(&["https://m1", "https://m2:443"]).unwrap());
        assert_eq!(d.follow(0, "https://M2/x"), Ok(1));
        // A relative Location stays on the master that answered.
        assert_eq!(m.follow(2, "/internal/v1/agents/register"), Ok(2));
        let e = m
            .follow(0, "https://evil.example:5050/internal/v1/agents/register")
            .unwrap_err();
        assert!(e.contains("not one of the configured masters"), "{e}");
        assert!(m.follow(0, "https://10.0.0.2:5051/").is_err(), "other port");
    }
}
