//! The replicated masters' part of the operator API (dccore extensions): ADD_MASTER and
//! REMOVE_MASTER calls, and `GET /replica`, how one master sees its group.

use serde::{Deserialize, Serialize};

/// `Call.AddMaster` (dccore extension): the new master's replica id (never one used before)
/// and the URL the other masters reach it at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddMaster {
    /// Its `replica_id`.
    pub id: u64,
    /// Its URL, `https://host:port`.
    pub url: String,
}

/// `Call.RemoveMaster` (dccore extension).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoveMaster {
    /// Its `replica_id`.
    pub id: u64,
}

/// `GET /replica` (dccore, replicated masters): how one master sees the group.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaStatus {
    /// This master's id.
    pub id: u64,
    /// This master's URL.
    pub url: String,
    /// This master leads (confirmed by a majority within the election timeout).
    pub is_leader: bool,
    /// The leader as this master knows it.
    pub leader: Option<MasterRef>,
    /// The current term.
    pub term: u64,
    /// Index of the last entry in this master's log.
    pub last_log_index: Option<u64>,
    /// Index of the last entry applied here.
    pub applied_index: Option<u64>,
    /// Index of the last entry in this master's latest snapshot (`None`: no snapshot yet).
    #[serde(default)]
    pub snapshot_index: Option<u64>,
    /// Index of the last entry purged from this master's log (the snapshot holds it).
    #[serde(default)]
    pub purged_index: Option<u64>,
    /// Voting members' ids.
    pub voters: Vec<u64>,
    /// Learners' ids.
    pub learners: Vec<u64>,
    /// Every member.
    pub members: Vec<ReplicaMember>,
}

impl ReplicaStatus {
    /// A voter that knows a leader: a working member of the group.
    pub fn is_working_member(&self) -> bool {
        self.leader.is_some() && self.voters.contains(&self.id)
    }
}

/// A master by id and URL.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MasterRef {
    /// Its id.
    pub id: u64,
    /// Its URL.
    pub url: String,
}

/// A member of the group in [`ReplicaStatus`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaMember {
    /// Its id.
    pub id: u64,
    /// Its URL.
    pub url: String,
    /// Voter (else learner).
    pub voter: bool,
    /// The last log index the leader knows it holds (only known on the leader).
    pub matched_index: Option<u64>,
}
