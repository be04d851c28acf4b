//! The masters' replicated group as dcform sees and changes it, over the masters' HTTP API (see
//! the project's ha-interface: `GET /replica` on each master, `ADD_MASTER` / `REMOVE_MASTER`
//! on the leader; a follower answers operator calls with `307` + `Location` of the leader, or
//! `503` while no leader is known).
//!
//! dcform calls from outside the cluster's network, so a `Location` (the leader's in-cluster
//! URL) is mapped back to the address dcform reaches that master at ([`public_api_address`]).
//! Redirects are followed here, by hand, and only to masters of the state: the operator token
//! is never sent anywhere else.

use std::path::Path;
use std::time::Duration;

use crate::apply::{GroupFuture, Left, Membership};
use crate::cluster_api::{AccessError, masters_http, read_secret};
use crate::state::NodeState;
use crate::step_ops::{api_address, public_api_address};

/// One call to a master (a `GET /replica`, a redirect hop).
const CALL_TIMEOUT: Duration = Duration::from_secs(5);
/// ADD_MASTER answers once the new master caught up and votes: that may take a while.
const ADD_TIMEOUT: Duration = Duration::from_secs(180);
/// How long a membership change keeps looking for a leader (an election after a loss).
const FIND_LEADER_FOR: Duration = Duration::from_secs(60);
/// How long a master may take to name a leader and count itself a voter.
const MEMBER_WAIT: Duration = Duration::from_secs(90);
/// Pause between rounds over the masters while none answers.
const ROUND_PAUSE: Duration = Duration::from_millis(300);

/// What a master says of the group (`GET /replica`), for itself: the api crate's type, so a field
/// renamed in dccore breaks this build, not a user's status.
pub use dccore_api::operator::ReplicaStatus as ReplicaView;

/// Errors of the group's calls. Each names the master asked and what it said.
#[derive(Debug, thiserror::Error)]
pub enum GroupError {
    /// No master answered at all.
    #[error("no master answered ({tried}); last: {last}")]
    NoAnswer {
        /// The URLs tried.
        tried: String,
        /// The last error.
        last: String,
    },
    /// The masters answer, but none knows a leader.
    #[error("no master knows a leader (an election is under way, or a majority is lost): {0}")]
    NoLeader(String),
    /// The leader refused the change.
    #[error("master {url} refused {call}: HTTP {status}: {body}")]
    Refused {
        /// The master.
        url: String,
        /// The operator call.
        call: &'static str,
        /// HTTP status.
        status: u16,
        /// Its message.
        body: String,
    },
    /// A redirect to a URL that is no master in the state: not followed (the token stays here).
    #[error("master {from} redirects to {to}, which is no master dcform knows; not followed")]
    Foreign {
        /// Who redirected.
        from: String,
        /// Where to.
        to: String,
    },
    /// A master's answer is not what the interface says.
    #[error("master {url} answered {what} with something unreadable: {detail}")]
    Unreadable {
        /// The master.
        url: String,
        /// The call.
        what: &'static str,
        /// Why.
        detail: String,
    },
}

/// dcform's client of the masters' group: the operator token, the cluster CA on a TLS cluster,
/// redirects not followed by the HTTP client (see the module docs).
#[derive(Clone)]
pub struct GroupClient {
    http: reqwest::Client,
    token: String,
    scheme: &'static str,
}

impl std::fmt::Debug for GroupClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupClient")
            .field("scheme", &self.scheme)
            .finish_non_exhaustive()
    }
}

impl GroupClient {
    /// The client of the cluster whose secrets are in the state folder `dir`.
    pub fn of(dir: &Path, tls: bool) -> Result<GroupClient, AccessError> {
        let token = read_secret(dir, crate::pki::OPERATOR_TOKEN_FILE)?;
        let http = masters_http(dir, tls, CALL_TIMEOUT, false)?;
        Ok(GroupClient {
            http,
            token,
            scheme: if tls { "https" } else { "http" },
        })
    }

    /// The URL dcform reaches `node`'s API at.
    pub fn public_url(&self, node: &NodeState) -> String {
        format!("{}://{}", self.scheme, public_api_address(node))
    }

    /// `GET /replica` of the master at `url`: what it says of itself and the group.
    pub async fn replica(&self, url: &str) -> Result<ReplicaView, GroupError> {
        let resp = self
            .http
            .get(format!("{url}/replica"))
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| GroupError::NoAnswer {
                tried: url.to_string(),
                last: dc_support::error::chain(&e),
            })?;
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        if status != 200 {
            return Err(GroupError::Refused {
                url: url.to_string(),
                call: "GET /replica",
                status,
                body: body.trim().to_string(),
            });
        }
        serde_json::from_str(&body).map_err(|e| GroupError::Unreadable {
            url: url.to_string(),
            what: "GET /replica",
            detail: e.to_string(),
        })
    }

    /// POSTs an operator call to the leader, found from `masters`: each is tried, a `307` is
    /// followed to the master it names (mapped to its public URL), a `503` or no answer moves
    /// on, rounds repeat until [`FIND_LEADER_FOR`]. Returns the leader's URL on success.
    async fn to_leader(
        &self,
        masters: &[NodeState],
        call: &'static str,
        body: &serde_json::Value,
        timeout: Duration,
    ) -> Result<String, GroupError> {
        let deadline = tokio::time::Instant::now() + FIND_LEADER_FOR;
        let tried = masters
            .iter()
            .map(|m| self.public_url(m))
            .collect::<Vec<_>>();
        let mut last = String::from("no master to ask");
        let mut no_leader = false;
        loop {
            for start in &tried {
                let mut url = start.clone();
                for _hop in 0..4 {
                    let sent = self
                        .http
                        .post(format!("{url}/api/v1"))
                        .bearer_auth(&self.token)
                        .json(body)
                        .timeout(timeout)
                        .send()
                        .await;
                    let resp = match sent {
                        Ok(r) => r,
                        Err(e) => {
                            last = format!("{url}: {}", dc_support::error::chain(&e));
                            break;
                        }
                    };
                    let status = resp.status().as_u16();
                    if status == 307 {
                        let to = resp
                            .headers()
                            .get(reqwest::header::LOCATION)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        url = self.map_location(masters, &url, &to)?;
                        continue;
                    }
                    let text = resp.text().await.unwrap_or_default();
                    match status {
                        200..=299 => return Ok(url),
                        503 => {
                            no_leader = true;
                            last = format!("{url}: {}", text.trim());
                        }
                        _ => {
                            return Err(GroupError::Refused {
                                url,
                                call,
                                status,
                                body: text.trim().to_string(),
                            });
                        }
                    }
                    break;
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(if no_leader {
                    GroupError::NoLeader(last)
                } else {
                    GroupError::NoAnswer {
                        tried: tried.join(", "),
                        last,
                    }
                });
            }
            tokio::time::sleep(ROUND_PAUSE).await;
        }
    }

    /// The public URL of the master a `Location` names (its in-cluster URL, maybe with a path).
    fn map_location(
        &self,
        masters: &[NodeState],
        from: &str,
        location: &str,
    ) -> Result<String, GroupError> {
        let hostport = location
            .split_once("://")
            .map_or(location, |(_, rest)| rest)
            .split('/')
            .next()
            .unwrap_or_default();
        masters
            .iter()
            .find(|m| api_address(m) == hostport || public_api_address(m) == hostport)
            .map(|m| self.public_url(m))
            .ok_or_else(|| GroupError::Foreign {
                from: from.to_string(),
                to: location.to_string(),
            })
    }

    /// The leader as the masters in `masters` name it: the first that names one, and what the
    /// leader itself says.
    pub async fn leader_of(&self, masters: &[NodeState]) -> Result<ReplicaView, GroupError> {
        let mut last = String::from("no master to ask");
        for m in masters {
            let url = self.public_url(m);
            match self.replica(&url).await {
                Ok(v) if v.is_leader => return Ok(v),
                Ok(v) => {
                    if let Some(l) = &v.leader
                        && let Ok(lu) = self.map_location(masters, &url, &l.url)
                        && let Ok(lv) = self.replica(&lu).await
                        && lv.is_leader
                    {
                        return Ok(lv);
                    }
                    last = format!("{url} knows no leader");
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(GroupError::NoLeader(last))
    }
}

impl Membership for GroupClient {
    fn join<'a>(&'a self, masters: &'a [NodeState], node: &'a NodeState) -> GroupFuture<'a, ()> {
        Box::pin(async move {
            let id = node
                .replica_id
                .ok_or("internal: a master to join has no id")?;
            let url = format!("{}://{}", self.scheme, api_address(node));
            let body = serde_json::json!({
                "type": "ADD_MASTER",
                "add_master": {"id": id, "url": url},
            });
            // The leader reaches the new master at its in-cluster URL; dcform only asks the
            // members (`masters`) and follows their redirects among them.
            self.to_leader(masters, "ADD_MASTER", &body, ADD_TIMEOUT)
                .await
                .map(|_| ())
                .map_err(|e| format!("adding master {id} ({url}) to the masters' group: {e}"))
        })
    }

    fn leave<'a>(&'a self, masters: &'a [NodeState], id: u64) -> GroupFuture<'a, Left> {
        Box::pin(async move {
            // Ask who leads first: the group refuses to remove its leader (409).
            if let Ok(l) = self.leader_of(masters).await
                && l.id == id
            {
                return Ok(Left::IsLeader);
            }
            let body = serde_json::json!({
                "type": "REMOVE_MASTER",
                "remove_master": {"id": id},
            });
            match self
                .to_leader(masters, "REMOVE_MASTER", &body, ADD_TIMEOUT)
                .await
            {
                Ok(_) => Ok(Left::Removed),
                Err(GroupError::Refused { status: 409, .. }) => Ok(Left::IsLeader),
                Err(e) => Err(format!("removing master {id} from the masters' group: {e}")),
            }
        })
    }

    fn leader<'a>(&'a self, masters: &'a [NodeState]) -> GroupFuture<'a, Option<u64>> {
        Box::pin(async move { Ok(self.leader_of(masters).await.ok().map(|v| v.id)) })
    }

    fn wait_member<'a>(&'a self, node: &'a NodeState) -> GroupFuture<'a, ()> {
        Box::pin(async move {
            let url = self.public_url(node);
            let deadline = tokio::time::Instant::now() + MEMBER_WAIT;
            loop {
                let seen = self.replica(&url).await;
                if let Ok(v) = &seen
                    && v.is_working_member()
                {
                    return Ok(());
                }
                if tokio::time::Instant::now() >= deadline {
                    let why = match seen {
                        Ok(v) if v.leader.is_none() => {
                            format!("it knows no leader (voters {:?})", v.voters)
                        }
                        Ok(v) => format!(
                            "it is not a voter (id {}, voters {:?}, learners {:?})",
                            v.id, v.voters, v.learners
                        ),
                        Err(e) => e.to_string(),
                    };
                    return Err(format!(
                        "master at {url} is not a working member of the masters' group after {}s: {why}",
                        MEMBER_WAIT.as_secs()
                    ));
                }
                tokio::time::sleep(ROUND_PAUSE).await;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of the interface's `GET /replica` answer reads, with and without a leader.
    #[test]
    fn replica_answer_reads_and_a_working_member_is_a_voter_that_knows_a_leader() {
        let v: ReplicaView = serde_json::from_str(
            r#"{"id":1,"url":"https://10.0.0.2:5050","is_leader":true,
                "leader":{"id":1,"url":"https://10.0.0.2:5050"},"term":3,
                "last_log_index":120,"applied_index":120,"voters":[1,2,3],"learners":[],
                "members":[{"id":1,"url":"https://10.0.0.2:5050","voter":true,"matched_index":120}]}"#,
        )
        .expect("the interface's example reads");
        assert!(v.is_working_member());
        assert_eq!((v.last_log_index, v.applied_index), (Some(120), Some(120)));
        let f: ReplicaView = serde_json::from_str(
            r#"{"id":4,"url":"u","is_leader":false,"leader":null,"term":0,
                "last_log_index":0,"applied_index":0,"voters":[],"learners":[4],"members":[]}"#,
        )
        .expect("a non-member's answer reads");
        assert!(!f.is_working_member());
    }
}
