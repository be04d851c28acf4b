//! The plan file (`dcform plan -out FILE`, format [`PLAN_FORMAT`]): the node changes and the state
//! they were computed against, as [`Plan`] has them, and the definition as a [`SavedDefinition`]
//! (its files, variables and hashes), never as a `ClusterSpec` to be trusted.
//!
//! `apply FILE` turns it back into a [`Plan`] only with a spec it has just loaded and validated
//! again, after [`SavedDefinition::check`] found it to be the one the plan was made from
//! ([`SavedPlan::into_plan`]). A sha256 over the whole file (changes included) finds an edit of
//! any part of it.

use serde::{Deserialize, Serialize};

use super::{CoreTarget, NodeChange, Plan, PlanBase, ServiceChange};
use crate::spec::ClusterSpec;
use crate::spec::saved::{SavedDefinition, SavedPlanError, hex_sha};

/// Plan file format. 1 carried the validated definition itself, applied unchecked; 2 carries the
/// definition's sources and hashes, and is checked again on apply.
pub const PLAN_FORMAT: u32 = 2;

/// A plan as saved by `plan -out`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SavedPlan {
    /// [`PLAN_FORMAT`].
    pub format: u32,
    /// Whether this plan destroys the whole cluster.
    pub destroy: bool,
    /// The core the plan installs.
    pub core: CoreTarget,
    /// The state the plan was made against.
    pub base: PlanBase,
    /// Node changes including no-ops, in wave order.
    pub changes: Vec<NodeChange>,
    /// Service changes including no-ops (absent in files written before services existed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub services: Vec<ServiceChange>,
    /// The definition the plan was made from, to load and check again.
    pub definition: SavedDefinition,
    /// sha256 over every field above (hex).
    pub sha256: String,
}

impl SavedPlan {
    /// The file form of `plan`, made from the definition `definition` describes.
    pub fn new(plan: &Plan, definition: SavedDefinition) -> SavedPlan {
        let mut saved = SavedPlan {
            format: PLAN_FORMAT,
            destroy: plan.destroy,
            core: plan.core.clone(),
            base: plan.base.clone(),
            changes: plan.changes.clone(),
            services: plan.services.clone(),
            definition,
            sha256: String::new(),
        };
        saved.sha256 = saved.digest();
        saved
    }

    fn digest(&self) -> String {
        let mut whole = serde_json::json!({
            "format": self.format,
            "destroy": self.destroy,
            "core": self.core,
            "base": self.base,
            "changes": self.changes,
            "definition": self.definition,
        });
        // Only when there are any: a plan without services hashes as files written before
        // services existed did, so those still verify. Deleting the services of a plan that has
        // some changes the hash all the same.
        if !self.services.is_empty() {
            whole["services"] = serde_json::json!(self.services);
        }
        hex_sha(whole.to_string().as_bytes())
    }

    /// Whether the file is as `plan -out` wrote it (its own hash, then its definition's).
    pub fn verify(&self) -> Result<(), SavedPlanError> {
        if self.digest() != self.sha256 {
            return Err(SavedPlanError::Tampered);
        }
        self.definition.verify()
    }

    /// The plan to carry out, with `spec` freshly loaded from the plan's definition. The caller has
    /// checked `spec` with [`SavedDefinition::check`]: this only puts the two together.
    pub fn into_plan(self, spec: ClusterSpec) -> Plan {
        Plan {
            destroy: self.destroy,
            spec,
            core: self.core,
            base: self.base,
            changes: self.changes,
            services: self.services,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use super::*;
    use crate::plan::{Action, diff};
    use crate::spec::{LoadOptions, input, load};
    use crate::state::State;

    fn saved_plan(dir: &Path) -> (SavedPlan, ClusterSpec) {
        let def = dir.join("c.hcl");
        std::fs::write(
            &def,
            "cluster \"c\" {\n  provider \"local\" {}\n  pool \"masters\" {\n    role = \"master\"\n    count = 1\n  }\n}\n",
        )
        .expect("write");
        let (loaded, reads) = input::recorded(|| load(&def, &LoadOptions::default()));
        let spec = loaded.expect("valid").spec;
        let core = CoreTarget {
            version: "1.0.0".into(),
        };
        let plan = diff(&spec, &State::new("c", spec.provider.kind()), &core, None);
        let definition =
            SavedDefinition::new(&def, PathBuf::from("/w"), vec![], vec![], &reads, &spec);
        (SavedPlan::new(&plan, definition), spec)
    }

    #[test]
    fn a_saved_plan_round_trips_and_carries_no_spec() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (saved, spec) = saved_plan(dir.path());
        let text = serde_json::to_string(&saved).expect("encode");
        assert!(!text.contains("\"spec\""), "{text}");
        let back: SavedPlan = serde_json::from_str(&text).expect("decode");
        back.verify().expect("as written");
        let plan = back.into_plan(spec);
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].action, Action::Create);
    }

    #[test]
    fn an_edited_change_or_base_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (saved, _) = saved_plan(dir.path());
        let mut edited = saved.clone();
        edited.changes[0].action = Action::NoOp;
        assert!(matches!(edited.verify(), Err(SavedPlanError::Tampered)));
        let mut edited = saved.clone();
        edited.base.serial = 7;
        assert!(matches!(edited.verify(), Err(SavedPlanError::Tampered)));
        let mut edited = saved;
        edited.definition.spec_sha256 = "0".repeat(64);
        assert!(matches!(edited.verify(), Err(SavedPlanError::Tampered)));
    }

    #[test]
    fn service_changes_are_saved_and_covered_by_the_hash() {
        let dir = tempfile::tempdir().expect("tempdir");
        let def = dir.path().join("c.hcl");
        std::fs::write(
            &def,
            "cluster \"c\" {\n  provider \"local\" {}\n  pool \"masters\" {\n    role = \"master\"\n    count = 1\n  }\n  service \"web\" {\n    cmd = \"sleep 100\"\n    instances = 2\n  }\n}\n",
        )
        .expect("write");
        let (loaded, reads) = input::recorded(|| load(&def, &LoadOptions::default()));
        let spec = loaded.expect("valid").spec;
        let core = CoreTarget {
            version: "1.0.0".into(),
        };
        let plan = diff(&spec, &State::new("c", spec.provider.kind()), &core, None);
        assert_eq!(plan.services.len(), 1);
        let definition =
            SavedDefinition::new(&def, PathBuf::from("/w"), vec![], vec![], &reads, &spec);
        let saved = SavedPlan::new(&plan, definition);
        let back: SavedPlan =
            serde_json::from_str(&serde_json::to_string(&saved).expect("encode")).expect("decode");
        back.verify().expect("as written");
        assert_eq!(back.clone().into_plan(spec).services, plan.services);
        let mut edited = back.clone();
        edited.services[0].instances = Some(50);
        assert!(matches!(edited.verify(), Err(SavedPlanError::Tampered)));
        let mut dropped = back;
        dropped.services.clear();
        assert!(matches!(dropped.verify(), Err(SavedPlanError::Tampered)));
    }

    #[test]
    fn a_plan_file_without_services_verifies_as_before() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (saved, _) = saved_plan(dir.path());
        let text = serde_json::to_string(&saved).expect("encode");
        assert!(!text.contains("\"services\""), "{text}");
        let back: SavedPlan = serde_json::from_str(&text).expect("decode");
        back.verify()
            .expect("a file of a build before services verifies");
    }

    #[test]
    fn a_saved_plan_with_a_marathon_json_service_checks_the_json_file_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let def = dir.path().join("c.hcl");
        let json = dir.path().join("web.json");
        std::fs::write(
            &def,
            "cluster \"c\" {\n  provider \"local\" {}\n  pool \"masters\" {\n    role = \"master\"\n    count = 1\n  }\n  service \"web\" {\n    marathon_json = file(\"web.json\")\n  }\n}\n",
        )
        .expect("write");
        std::fs::write(&json, r#"{"cmd": "sleep 100", "instances": 2}"#).expect("write");
        let (loaded, reads) = input::recorded(|| load(&def, &LoadOptions::default()));
        let spec = loaded.expect("valid").spec;
        let core = CoreTarget {
            version: "1.0.0".into(),
        };
        let plan = diff(&spec, &State::new("c", spec.provider.kind()), &core, None);
        let saved = SavedPlan::new(
            &plan,
            SavedDefinition::new(&def, PathBuf::from("/w"), vec![], vec![], &reads, &spec),
        );
        // apply PLANFILE: the definition loaded again is the one planned ...
        let (again, reads) = input::recorded(|| load(&def, &LoadOptions::default()));
        let again = again.expect("still valid").spec;
        saved.definition.check(&reads, &again).expect("unchanged");
        // ... and an edit of the service's JSON is found, naming the file.
        std::fs::write(&json, r#"{"cmd": "sleep 100", "instances": 9}"#).expect("write");
        let (edited, reads) = input::recorded(|| load(&def, &LoadOptions::default()));
        let edited = edited.expect("still valid").spec;
        match saved.definition.check(&reads, &edited) {
            Err(SavedPlanError::SourceChanged { changed }) => {
                assert!(
                    changed.iter().any(|p| p.ends_with("web.json")),
                    "{changed:?}"
                )
            }
            other => panic!("expected SourceChanged, got {other:?}"),
        }
    }
}
