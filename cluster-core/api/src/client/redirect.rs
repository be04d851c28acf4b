//! Which `307 Location` the operator client follows, and with what: pure, so that the rule is
//! unit-tested.
//!
//! A follower answers `307` naming the leader. The client re-sends the call (body and bearer
//! token) only to a master it was given ([`super::OperatorClient::with_masters`]): same host and
//! port as one of them, and then at that master's own URL, so that a Location can neither send
//! the operator token to another host nor turn `https` into `http`. A client given one master
//! follows nothing to another host: it was not told that host is of the same cluster, and the
//! token is every right on the cluster (dcform knows every master and gives them all).

/// `host:port` of a URL (the scheme's default port when none is written), lower case.
pub fn host_port(url: &str) -> Option<String> {
    let u = reqwest::Url::parse(url).ok()?;
    let host = u.host_str()?;
    let port = u.port_or_known_default()?;
    Some(format!("{host}:{port}").to_ascii_lowercase())
}

/// The index in `masters` of the master that `location` (absolute, or relative to `from`)
/// names, or why it is not followed.
pub fn target(masters: &[String], from: &str, location: &str) -> Result<usize, String> {
    let base = reqwest::Url::parse(from).map_err(|e| format!("{from} is not a URL: {e}"))?;
    let to = base
        .join(location)
        .map_err(|e| format!("Location {location:?} is not a URL: {e}"))?;
    let key = host_port(to.as_str());
    masters
        .iter()
        .position(|m| key.is_some() && host_port(m) == key)
        .ok_or_else(|| {
            format!(
                "{location} is not one of the masters this client was given ({}): not followed, the token stays with them",
                masters.join(", ")
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masters() -> Vec<String> {
        vec![
            "https://10.0.0.1:5050".into(),
            "https://10.0.0.2:5050".into(),
            "https://m3".into(),
        ]
    }

    #[test]
    fn a_location_at_a_given_master_is_followed_to_that_master() {
        let m = masters();
        assert_eq!(target(&m, &m[0], "https://10.0.0.2:5050/api/v1"), Ok(1));
        assert_eq!(
            target(&m, &m[0], "https://M3:443/api/v1"),
            Ok(2),
            "default port"
        );
        assert_eq!(target(&m, &m[1], "/api/v1"), Ok(1), "relative: same master");
        // Same host and port, other scheme: matched, and the given (https) URL is what is used.
        assert_eq!(target(&m, &m[0], "http://10.0.0.2:5050/api/v1"), Ok(1));
    }

    #[test]
    fn a_location_elsewhere_is_refused_and_says_why() {
        let m = masters();
        let e = target(&m, &m[0], "https://10.0.0.9:5050/api/v1").unwrap_err();
        assert!(e.contains("not one of the masters"), "{e}");
        assert!(target(&m, &m[0], "https://10.0.0.2:5051/api/v1").is_err());
        assert!(target(&m[..1], &m[0], "https://10.0.0.2:5050/api/v1").is_err());
    }
}
