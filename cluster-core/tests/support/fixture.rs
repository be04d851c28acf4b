//! The set-up most tests start from, written once: a master with one agent, a framework with
//! its first offer.

use super::{AGENT_RES, Agent, Framework, Master, framework_info};
use serde_json::Value;
use std::path::Path;

/// A master in `dir/m` and one agent in `dir/a1` offering [`AGENT_RES`], registered.
pub async fn master_and_agent(dir: &Path) -> (Master, Agent) {
    let m = Master::start(&dir.join("m")).await;
    let a = Agent::start(&m.url, &dir.join("a1"), AGENT_RES, false).await;
    m.wait_agents(1).await;
    (m, a)
}

impl Framework {
    /// A framework named `name` subscribed to the master at `base`, and the first offer it gets.
    pub async fn first_offer(base: &str, name: &str) -> (Framework, Value) {
        let mut fw = Framework::subscribe(base, framework_info(name)).await;
        let offer = fw.offers().await.remove(0);
        (fw, offer)
    }
}
