//! Rolling deployments, pure: Marathon's `upgradeStrategy` rule turned into the next step.
//!
//! During a change from version A to B of an app with N instances, Marathon keeps at least
//! `ceil(N * minimumHealthCapacity)` ready instances (of either version) and at most
//! `N + floor(N * maximumOverCapacity)` instances in all. New-version instances are started
//! within that over-capacity budget; old ones are killed only while enough ready instances
//! remain. *Ready* is healthy for an app with health checks, running for one without.
//!
//! When both bounds meet (`minimumHealthCapacity` 1 with `maximumOverCapacity` 0) no step
//! keeps the rule; like Marathon, one old instance is then killed so the deployment can move
//! on (so for a moment N - 1 instances are ready).
//!
//! [`plan`] is called again after every change (offer, status update, health result, tick), so
//! it only says what to do *next*.

use dccore_api::marathon::AppId;
use serde_json::json;
use std::time::Duration;

/// One instance as the plan sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct Seen {
    /// Task id.
    pub task_id: String,
    /// Of the version being deployed (the app's current version).
    pub current: bool,
    /// Running and (with health checks) healthy.
    pub ready: bool,
    /// Epoch seconds of the launch (newest surplus instances go first).
    pub staged_at: f64,
    /// Killed but not gone yet: it still takes its place (Marathon starts a replacement only
    /// once the old instance has ended), but is neither ready nor killed again.
    pub dying: bool,
}

/// The app's upgrade strategy and size.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Strategy {
    /// Wanted instances (N).
    pub instances: u32,
    /// `upgradeStrategy.minimumHealthCapacity`, 0..=1.
    pub minimum_health_capacity: f64,
    /// `upgradeStrategy.maximumOverCapacity`, 0..=1.
    pub maximum_over_capacity: f64,
}

impl Strategy {
    /// `ceil(N * minimumHealthCapacity)`: ready instances kept at all times.
    pub fn min_ready(&self) -> u32 {
        let n = f64::from(self.instances);
        ((n * self.minimum_health_capacity.clamp(0.0, 1.0)).ceil() as u32).min(self.instances)
    }

    /// `N + floor(N * maximumOverCapacity)`: instances allowed at once.
    pub fn max_total(&self) -> u32 {
        let n = f64::from(self.instances);
        self.instances + (n * self.maximum_over_capacity.clamp(0.0, 1.0)).floor() as u32
    }
}

/// What to do next.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Step {
    /// New-version instances to start now.
    pub start: u32,
    /// Instances to kill now (old versions, and surplus ones of the current version).
    pub kill: Vec<String>,
}

/// The next step for an app: `active` are its instances that take a place (not finished, not
/// unreachable), those being killed marked `dying`.
pub fn plan(s: &Strategy, active: &[Seen]) -> Step {
    let want = s.instances as usize;
    let min_ready = s.min_ready() as usize;
    let max_total = s.max_total() as usize;
    let live = || active.iter().filter(|i| !i.dying);
    let mut current: Vec<&Seen> = live().filter(|i| i.current).collect();
    let mut old: Vec<&Seen> = live().filter(|i| !i.current).collect();
    let mut ready = live().filter(|i| i.ready).count();
    let mut total = active.len();
    let mut kill = Vec::new();

    // Surplus of the current version (a scale down, a replaced instance that came back):
    // the newest, least established, go first; unready before ready.
    if current.len() > want {
        current.sort_by(|a, b| {
            a.ready
                .cmp(&b.ready)
                .then(b.staged_at.total_cmp(&a.staged_at))
        });
        for i in current.drain(..current.len() - want) {
            ready -= usize::from(i.ready);
            total -= 1;
            kill.push(i.task_id.clone());
        }
    }
    // Old instances that are not ready serve nobody: they go at once, freeing capacity.
    // Then ready old ones, oldest first, as far as `min_ready` allows.
    old.sort_by(|a, b| {
        a.ready
            .cmp(&b.ready)
            .then(a.staged_at.total_cmp(&b.staged_at))
    });
    let mut kept_old = Vec::new();
    for i in old {
        if !i.ready {
            total -= 1;
            kill.push(i.task_id.clone());
        } else if ready > min_ready {
            ready -= 1;
            total -= 1;
            kill.push(i.task_id.clone());
        } else {
            kept_old.push(i);
        }
    }
    let start = want
        .saturating_sub(current.len())
        .min(max_total.saturating_sub(total));
    // Both bounds met and nothing on its way (no new instance starting, no old one ending): no
    // step keeps the rule, so one old instance goes (Marathon does the same) and its place is
    // taken by a new one.
    let in_flight = current.iter().any(|i| !i.ready) || active.iter().any(|i| i.dying);
    if start == 0
        && kill.is_empty()
        && !in_flight
        && current.len() < want
        && let Some(i) = kept_old.first()
    {
        kill.push(i.task_id.clone());
    }
    Step {
        start: start as u32,
        kill,
    }
}

/// Marathon's plan of an app's deployment, the actions of its steps in order: a new app is
/// started then scaled, a change of version restarts it (rolling, as above; a rollback too),
/// a change of the instance count only scales it.
pub fn steps(e: &super::AppEntry) -> Vec<&'static str> {
    match &e.previous {
        None => vec!["StartApplication", "ScaleApplication"],
        Some((_, v)) if *v == e.version => vec!["ScaleApplication"],
        Some(_) => vec!["RestartApplication"],
    }
}

/// The 1-based step of [`steps`] running now: a new app's second once any instance exists.
pub fn current_step(e: &super::AppEntry, instances: usize) -> usize {
    usize::from(e.previous.is_none() && instances > 0) + 1
}

impl super::scheduler::Core {
    /// The app's deployment missed its deadline: the definition and version before it come
    /// back (so their instances count as current again, and the new version's are killed by
    /// the next [`plan`]), as a new deployment without a deadline of its own. A first
    /// deployment has nothing to go back to and goes on.
    pub(super) fn roll_back(&mut self, id: &AppId) -> Vec<super::scheduler::Action> {
        let timeout = self.deployment_timeout.unwrap_or_default().as_secs_f64();
        let Some(e) = self.apps.get_mut(id) else {
            return Vec::new();
        };
        e.deadline = None;
        let failed = e.deployment.clone().unwrap_or_default();
        let Some((app, version)) = e.previous.take() else {
            tracing::warn!(app = %id, deployment = %failed, timeout_secs = timeout,
                "services: a first deployment did not finish within its deadline; nothing to roll back to, it goes on");
            return Vec::new();
        };
        let bad_version = std::mem::replace(&mut e.version, version.clone());
        let bad_app = std::mem::replace(&mut e.app, app);
        // Kept, so that cancelling the rollback goes forward again (Marathon's previous version).
        e.previous = Some((bad_app, bad_version.clone()));
        e.deployment = Some(uuid::Uuid::new_v4().to_string());
        e.delay = Duration::ZERO;
        e.launch_after = None;
        let message = format!(
            "deployment {failed} of version {bad_version} did not finish within {timeout} s: rolled back to version {version}"
        );
        tracing::warn!(app = %id, deployment = %failed, "services: {message}");
        let last = e.last_failure.take().unwrap_or_else(|| json!({}));
        e.last_failure = Some(json!({
            "appId": id.to_string(), "taskId": last["taskId"].as_str().unwrap_or(""),
            "host": last["host"].as_str().unwrap_or(""), "version": bad_version,
            "state": last["state"].as_str().unwrap_or("TASK_FAILED"), "message": message,
            "timestamp": crate::services::iso_time(crate::proto::now_secs()),
            // dccore: why this is the last failure (a rollback, not only a task's end).
            "deploymentResult": "rolledBack", "lastTaskMessage": last["message"].clone(),
        }));
        vec![super::scheduler::Action::Revive]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(id: &str, current: bool, ready: bool) -> Seen {
        Seen {
            task_id: id.into(),
            current,
            ready,
            staged_at: 0.0,
            dying: false,
        }
    }

    fn strategy(n: u32, min: f64, max: f64) -> Strategy {
        Strategy {
            instances: n,
            minimum_health_capacity: min,
            maximum_over_capacity: max,
        }
    }

    #[test]
    fn bounds_are_marathons() {
        assert_eq!(strategy(3, 0.5, 1.0).min_ready(), 2);
        assert_eq!(strategy(3, 0.5, 1.0).max_total(), 6);
        assert_eq!(strategy(4, 0.5, 0.2).max_total(), 4);
        assert_eq!(strategy(3, 1.0, 0.0).min_ready(), 3);
        assert_eq!(strategy(0, 1.0, 1.0).max_total(), 0);
    }

    #[test]
    fn defaults_start_every_new_instance_and_kill_old_ones_only_as_new_ones_get_ready() {
        let s = strategy(3, 1.0, 1.0);
        let old = [
            seen("a", false, true),
            seen("b", false, true),
            seen("c", false, true),
        ];
        assert_eq!(plan(&s, &old).start, 3);
        assert!(plan(&s, &old).kill.is_empty());
        let mut mid = old.to_vec();
        mid.extend([
            seen("x", true, true),
            seen("y", true, false),
            seen("z", true, false),
        ]);
        assert_eq!(
            plan(&s, &mid),
            Step {
                start: 0,
                kill: vec!["a".into()]
            }
        );
    }

    #[test]
    fn half_health_capacity_kills_down_to_the_minimum_at_once() {
        let s = strategy(4, 0.5, 1.0);
        let old: Vec<Seen> = (0..4)
            .map(|n| seen(&format!("o{n}"), false, true))
            .collect();
        let step = plan(&s, &old);
        assert_eq!(step.kill.len(), 2, "4 * 0.5 old instances stay");
        assert_eq!(step.start, 4);
    }

    #[test]
    fn no_over_capacity_starts_new_ones_only_in_place_of_old_ones() {
        let s = strategy(4, 0.5, 0.0);
        let old: Vec<Seen> = (0..4)
            .map(|n| seen(&format!("o{n}"), false, true))
            .collect();
        let step = plan(&s, &old);
        // Killed ones still count until they are gone: they are not in `active` next time.
        assert_eq!(step.kill.len(), 2);
        assert_eq!(step.start, 2);
    }

    #[test]
    fn meeting_bounds_kill_one_old_instance_then_wait_for_its_replacement() {
        let s = strategy(3, 1.0, 0.0);
        let old = [
            seen("a", false, true),
            seen("b", false, true),
            seen("c", false, true),
        ];
        assert_eq!(
            plan(&s, &old),
            Step {
                start: 0,
                kill: vec!["a".into()]
            }
        );
        let dying = Seen {
            dying: true,
            ..seen("a", false, true)
        };
        let two = [
            dying.clone(),
            seen("b", false, true),
            seen("c", false, true),
        ];
        assert_eq!(plan(&s, &two), Step::default(), "a still takes its place");
        assert_eq!(
            plan(&s, &two[1..]).start,
            1,
            "a is gone: its replacement starts"
        );
        let waiting = [
            seen("b", false, true),
            seen("c", false, true),
            seen("x", true, false),
        ];
        assert_eq!(
            plan(&s, &waiting),
            Step::default(),
            "the new one is on its way"
        );
    }

    #[test]
    fn old_instances_that_are_not_ready_go_first_and_surplus_current_ones_go_newest_first() {
        let s = strategy(2, 1.0, 0.0);
        let mut i = vec![seen("sick", false, false), seen("ok", false, true)];
        i.push(Seen {
            staged_at: 5.0,
            ..seen("n1", true, true)
        });
        assert_eq!(
            plan(&s, &i),
            Step {
                start: 0,
                kill: vec!["sick".into()]
            }
        );
        let surplus = [
            seen("n1", true, true),
            Seen {
                staged_at: 9.0,
                ..seen("n2", true, true)
            },
            seen("n3", true, true),
        ];
        assert_eq!(plan(&s, &surplus).kill, vec!["n2".to_string()]);
    }

    #[test]
    fn a_settled_app_needs_nothing() {
        let s = strategy(2, 1.0, 1.0);
        let i = [seen("a", true, true), seen("b", true, false)];
        assert_eq!(plan(&s, &i), Step::default());
        assert_eq!(plan(&s, &[seen("a", true, true)]).start, 1);
    }
}
