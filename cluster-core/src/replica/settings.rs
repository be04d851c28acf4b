//! A master's replica settings as its config file gives them (`replica_id`, `replica_peers`,
//! `replica_secret_file`), validated into [`ReplicaSettings`].

use super::NodeId;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// What is wrong with the replica fields of a master's config.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// Some of the three fields are given, not all.
    #[error("replica_id, replica_peers and replica_secret_file go together; missing: {missing}")]
    Missing {
        /// The missing fields, comma-separated.
        missing: String,
    },
    /// An entry of `replica_peers` is not `ID=URL`.
    #[error(
        "replica_peers[{index}] = {entry:?}: {why} (want \"ID=URL\", e.g. \"2=https://10.0.0.2:5050\")"
    )]
    BadPeer {
        /// Its index in the list.
        index: usize,
        /// The entry.
        entry: String,
        /// What is wrong.
        why: &'static str,
    },
    /// `replica_peers` lacks this master.
    #[error("replica_peers must list this master's own id {id} (replica_id) with its URL")]
    NotAPeer {
        /// `replica_id`.
        id: NodeId,
    },
}

/// Which master this is in the group, who the others are, and the masters' shared secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplicaSettings {
    /// This master's id.
    pub id: NodeId,
    /// Every master of the group, this one included: id → URL.
    pub peers: BTreeMap<NodeId, String>,
    /// The file holding the secret that only masters know (0600); the Raft routes admit
    /// nothing else.
    pub secret_file: PathBuf,
}

impl ReplicaSettings {
    /// This master's own URL as the peers reach it.
    pub fn url(&self) -> &str {
        // `parse` refuses settings whose peers lack this master.
        self.peers.get(&self.id).map_or("", String::as_str)
    }

    /// Validates the config file's three fields (all or none), naming the field at fault.
    /// `None` when none is given: a single master, as before replication.
    pub fn parse(
        id: Option<NodeId>,
        peers: Option<&[String]>,
        secret_file: Option<PathBuf>,
    ) -> Result<Option<ReplicaSettings>, SettingsError> {
        let (id, peers, secret_file) = match (id, peers, secret_file) {
            (None, None, None) => return Ok(None),
            (Some(i), Some(p), Some(f)) => (i, p, f),
            (i, p, f) => {
                let missing: Vec<&str> = [
                    i.is_none().then_some("replica_id"),
                    p.is_none().then_some("replica_peers"),
                    f.is_none().then_some("replica_secret_file"),
                ]
                .into_iter()
                .flatten()
                .collect();
                return Err(SettingsError::Missing {
                    missing: missing.join(", "),
                });
            }
        };
        let mut map = BTreeMap::new();
        for (n, entry) in peers.iter().enumerate() {
            let bad = |why| SettingsError::BadPeer {
                index: n,
                entry: entry.clone(),
                why,
            };
            let (pid, url) = entry.split_once('=').ok_or_else(|| bad("no '='"))?;
            let pid: NodeId = pid
                .trim()
                .parse()
                .map_err(|_| bad("the id is not a number"))?;
            let url = url.trim();
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(bad("the URL must start with https:// or http://"));
            }
            if map.insert(pid, url.to_string()).is_some() {
                return Err(bad("the id is given twice"));
            }
        }
        if !map.contains_key(&id) {
            return Err(SettingsError::NotAPeer { id });
        }
        Ok(Some(ReplicaSettings {
            id,
            peers: map,
            secret_file,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peers(p: &[&str]) -> Vec<String> {
        p.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn no_replica_fields_is_a_single_master() {
        assert_eq!(ReplicaSettings::parse(None, None, None), Ok(None));
    }

    #[test]
    fn all_three_fields_give_the_group() {
        let p = peers(&["1=https://a:5050", "2 = https://b:5050"]);
        let s = ReplicaSettings::parse(Some(2), Some(&p), Some("s".into()))
            .expect("valid")
            .expect("some");
        assert_eq!(s.url(), "https://b:5050");
        assert_eq!(s.peers.len(), 2);
    }

    #[test]
    fn a_missing_field_is_named() {
        let p = peers(&["1=https://a:5050"]);
        let e = ReplicaSettings::parse(Some(1), Some(&p), None)
            .expect_err("refused")
            .to_string();
        assert!(e.contains("missing: replica_secret_file"), "{e}");
    }

    #[test]
    fn bad_peer_entries_are_named_with_their_index() {
        for (entry, why) in [
            ("x=https://a", "not a number"),
            ("1 https://a", "no '='"),
            ("1=a:5050", "must start with"),
        ] {
            let p = peers(&["1=https://a:5050", entry]);
            let e = ReplicaSettings::parse(Some(1), Some(&p), Some("s".into()))
                .expect_err(entry)
                .to_string();
            assert!(e.contains("replica_peers[1]") && e.contains(why), "{e}");
        }
        let p = peers(&["1=https://a:5050", "1=https://b:5050"]);
        let e = ReplicaSettings::parse(Some(1), Some(&p), Some("s".into()))
            .expect_err("dup")
            .to_string();
        assert!(e.contains("given twice"), "{e}");
    }

    #[test]
    fn own_id_must_be_among_the_peers() {
        let p = peers(&["1=https://a:5050"]);
        let e = ReplicaSettings::parse(Some(3), Some(&p), Some("s".into())).expect_err("refused");
        assert_eq!(e, SettingsError::NotAPeer { id: 3 });
    }
}
