//! The vocabulary of a cluster definition, one definition of each word, shared by the crates that
//! read definitions (`dcform`'s `spec`), write them (`terraform-compat`) and install what they
//! describe (`dcform-bootstrap`'s templates):
//!
//! | type | meaning |
//! |---|---|
//! | [`Role`] | what every node of a pool runs: `master`, `agent` or `public_agent` |
//! | [`PoolName`] | a pool's name, valid by construction (see [`valid_name`]): node names are `<pool>-<index>` |

use std::fmt;

use serde::{Deserialize, Serialize};

/// The role every node of a pool plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs `dccore master`.
    Master,
    /// Runs `dccore agent`.
    Agent,
    /// Runs `dccore agent --public`: resources reserved for role `slave_public`.
    PublicAgent,
}

impl Role {
    /// All roles, in the order the HCL names them.
    pub const ALL: [Role; 3] = [Role::Master, Role::Agent, Role::PublicAgent];

    /// The name used in HCL and in the state: `master`, `agent`, `public_agent`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::PublicAgent => "public_agent",
        }
    }

    /// Parses the HCL spelling.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Whether nodes of this role run an agent (public or not).
    pub fn is_agent(self) -> bool {
        matches!(self, Role::Agent | Role::PublicAgent)
    }

    /// The name used in a node's file and unit names: `master`, `agent`, `public-agent`.
    pub fn file_name(self) -> &'static str {
        match self {
            Role::Master => "master",
            Role::Agent => "agent",
            Role::PublicAgent => "public-agent",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Longest cluster or pool name: both end up in host and container names.
pub const MAX_NAME: usize = 40;

/// The rule for cluster and pool names (they become host and container names): lowercase letters,
/// digits and `-`, starting with a letter, not ending with `-`, at most [`MAX_NAME`] characters.
pub fn valid_name(n: &str) -> bool {
    n.len() <= MAX_NAME
        && n.starts_with(|c: char| c.is_ascii_lowercase())
        && !n.ends_with('-')
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// A pool's name, checked by [`valid_name`]. Serialised as the plain string; deserialising checks it
/// again, so a hand-edited state or plan cannot carry an invalid one.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct PoolName(String);

/// A name that breaks [`valid_name`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidName(pub String);

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid name {:?}: lowercase letters, digits and `-`, starting with a letter, at most {MAX_NAME} characters",
            self.0
        )
    }
}

impl std::error::Error for InvalidName {}

impl PoolName {
    /// The name, if it is valid.
    pub fn new(name: impl Into<String>) -> Result<PoolName, InvalidName> {
        let name = name.into();
        if valid_name(&name) {
            Ok(PoolName(name))
        } else {
            Err(InvalidName(name))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for PoolName {
    type Error = InvalidName;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        PoolName::new(s)
    }
}

impl From<PoolName> for String {
    fn from(p: PoolName) -> String {
        p.0
    }
}

impl std::ops::Deref for PoolName {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for PoolName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for PoolName {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for PoolName {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for PoolName {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for PoolName {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl PartialEq<PoolName> for String {
    fn eq(&self, other: &PoolName) -> bool {
        self == &other.0
    }
}

impl PartialEq<PoolName> for str {
    fn eq(&self, other: &PoolName) -> bool {
        self == other.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_round_trip_through_their_hcl_spelling_and_serde() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Some(r));
            let json = serde_json::to_string(&r).expect("encode");
            assert_eq!(json, format!("\"{}\"", r.as_str()));
        }
        assert_eq!(Role::PublicAgent.file_name(), "public-agent");
        assert_eq!(Role::parse("slave_public"), None);
    }

    #[test]
    fn a_pool_name_is_valid_by_construction_and_when_read_back() {
        assert_eq!(
            PoolName::new("public-agents").expect("valid"),
            "public-agents"
        );
        for bad in [
            "",
            "Agents",
            "1agents",
            "agents-",
            "a_b",
            &"a".repeat(MAX_NAME + 1),
        ] {
            assert!(PoolName::new(bad).is_err(), "{bad:?}");
        }
        let p: PoolName = serde_json::from_str("\"agents\"").expect("valid");
        assert_eq!(serde_json::to_string(&p).expect("encode"), "\"agents\"");
        assert!(serde_json::from_str::<PoolName>("\"Agents\"").is_err());
    }
}
