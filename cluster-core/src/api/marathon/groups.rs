//! `/v2/groups`: Marathon's group tree. dccore keeps no group definitions: the tree is made
//! from the app ids (`/prod/web` is app `web` of group `/prod`), so it is always consistent with
//! `/v2/apps`. `embed=group.apps`, `group.groups` and `group.apps.tasks` are honoured like
//! Marathon's (without `embed`, apps and subgroups are both shown); the other `embed` values are
//! accepted and change nothing (an app always carries its counters).

use super::apps::app_json;
use super::{MarathonState, message, snapshot};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use dccore_api::marathon::answers::{AppStatus, Group};

/// The version of a group without apps (Marathon's groups always carry one).
const EMPTY_VERSION: &str = "1970-01-01T00:00:00.000Z";

/// What `embed` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Embed {
    apps: bool,
    groups: bool,
    tasks: bool,
}

impl Embed {
    fn of(query: &[(String, String)]) -> Embed {
        let asked: Vec<&str> = query
            .iter()
            .filter(|(k, _)| k == "embed")
            .flat_map(|(_, v)| v.split(','))
            .map(str::trim)
            .collect();
        if asked.is_empty() {
            return Embed {
                apps: true,
                groups: true,
                tasks: false,
            };
        }
        Embed {
            apps: asked.iter().any(|e| e.starts_with("group.apps")),
            groups: asked.contains(&"group.groups"),
            tasks: asked.contains(&"group.apps.tasks"),
        }
    }
}

/// Builds the tree of groups from apps (any order): every app sits in the group of its id's
/// parent path, each group in its parent's, all in id order, and each group's version is the
/// newest of its subtree's apps. Pure, so the shape is tested without a master.
pub(super) fn tree(mut apps: Vec<AppStatus>) -> Group {
    apps.sort_by(|a, b| a.id.cmp(&b.id));
    let mut root = empty("/");
    for app in apps {
        let labels: Vec<String> = app
            .id
            .trim_matches('/')
            .split('/')
            .map(str::to_string)
            .collect();
        let parents = &labels[..labels.len().saturating_sub(1)];
        insert(&mut root, parents, app);
    }
    set_versions(&mut root);
    root
}

fn empty(id: &str) -> Group {
    Group {
        id: id.to_string(),
        apps: Vec::new(),
        groups: Vec::new(),
        pods: Vec::new(),
        dependencies: Vec::new(),
        version: EMPTY_VERSION.to_string(),
    }
}

fn insert(group: &mut Group, parents: &[String], app: AppStatus) {
    let Some((first, rest)) = parents.split_first() else {
        group.apps.push(app);
        return;
    };
    let id = format!("{}/{first}", group.id.trim_end_matches('/'));
    // Apps arrive in id order, so a new subgroup sorts after the existing ones.
    let child = match group.groups.iter().position(|g| g.id == id) {
        Some(i) => &mut group.groups[i],
        None => {
            group.groups.push(empty(&id));
            group.groups.last_mut().expect("invariant: just pushed")
        }
    };
    insert(child, rest, app);
}

fn set_versions(group: &mut Group) {
    for g in &mut group.groups {
        set_versions(g);
    }
    // ISO-8601 UTC strings of one format sort as the times they name.
    let newest = group
        .apps
        .iter()
        .map(|a| a.version.as_str())
        .chain(group.groups.iter().map(|g| g.version.as_str()))
        .max()
        .unwrap_or(EMPTY_VERSION)
        .to_string();
    group.version = newest;
}

/// The group `id` (a path; `""` is the root) of the tree.
pub(super) fn find<'a>(root: &'a Group, id: &str) -> Option<&'a Group> {
    let want = format!("/{}", id.trim_matches('/'));
    let mut g = root;
    while g.id != want {
        let on_the_way = |c: &&Group| want == c.id || want.starts_with(&format!("{}/", c.id));
        g = g.groups.iter().find(on_the_way)?;
    }
    Some(g)
}

/// Drops what `embed` did not ask for, in the whole subtree.
fn trim(g: &mut Group, embed: Embed) {
    if !embed.apps {
        g.apps.clear();
    }
    if !embed.groups {
        g.groups.clear();
    }
    for c in &mut g.groups {
        trim(c, embed);
    }
}

pub(super) async fn root(
    State(h): State<MarathonState>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    answer(h, String::new(), &q).await
}

pub(super) async fn group(
    State(h): State<MarathonState>,
    Path(id): Path<String>,
    Query(q): Query<Vec<(String, String)>>,
) -> Response {
    answer(h, id, &q).await
}

async fn answer(h: MarathonState, id: String, q: &[(String, String)]) -> Response {
    let s = match snapshot(&h).await {
        Ok(s) => s,
        Err(r) => return r,
    };
    let embed = Embed::of(q);
    let apps = s
        .apps
        .iter()
        .map(|a| app_json(a, &s.instances, embed.tasks))
        .collect();
    let root = tree(apps);
    let Some(found) = find(&root, &id) else {
        let id = format!("/{}", id.trim_matches('/'));
        return message(
            StatusCode::NOT_FOUND,
            format!("Group '{id}' does not exist"),
        );
    };
    let mut g = found.clone();
    trim(&mut g, embed);
    axum::Json(g).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use dccore_api::marathon::answers::VersionInfo;

    fn app(id: &str, version: &str) -> AppStatus {
        AppStatus {
            id: id.into(),
            instances: 1,
            version: version.into(),
            version_info: VersionInfo {
                last_scaling_at: version.into(),
                last_config_change_at: version.into(),
            },
            tasks_running: 0,
            tasks_staged: 0,
            tasks_healthy: 0,
            tasks_unhealthy: 0,
            deployments: Vec::new(),
            last_task_failure: None,
            tasks: None,
            definition: Default::default(),
        }
    }

    fn ids(g: &Group) -> (Vec<&str>, Vec<&str>) {
        (
            g.apps.iter().map(|a| a.id.as_str()).collect(),
            g.groups.iter().map(|g| g.id.as_str()).collect(),
        )
    }

    #[test]
    fn apps_sit_in_the_group_of_their_parent_path_and_groups_nest_in_id_order() {
        let root = tree(vec![
            app("/prod/web", "2026-01-02T00:00:00.000Z"),
            app("/db", "2026-01-01T00:00:00.000Z"),
            app("/prod/api/v1", "2026-01-03T00:00:00.000Z"),
            app("/dev/web", "2026-01-04T00:00:00.000Z"),
            app("/prod/cache", "2026-01-01T00:00:00.000Z"),
        ]);
        assert_eq!(root.id, "/");
        assert_eq!(ids(&root), (vec!["/db"], vec!["/dev", "/prod"]));
        let prod = &root.groups[1];
        assert_eq!(
            ids(prod),
            (vec!["/prod/cache", "/prod/web"], vec!["/prod/api"])
        );
        assert_eq!(ids(&prod.groups[0]), (vec!["/prod/api/v1"], vec![]));
        // A group's version is its subtree's newest app's.
        assert_eq!(prod.version, "2026-01-03T00:00:00.000Z");
        assert_eq!(root.version, "2026-01-04T00:00:00.000Z");
    }

    #[test]
    fn find_walks_to_a_nested_group_and_not_to_an_app_or_a_prefix() {
        let root = tree(vec![app("/prod/api/v1", "v"), app("/production/x", "v")]);
        assert_eq!(find(&root, "").map(|g| g.id.as_str()), Some("/"));
        assert_eq!(find(&root, "/").map(|g| g.id.as_str()), Some("/"));
        assert_eq!(
            find(&root, "prod/api/").map(|g| g.id.as_str()),
            Some("/prod/api")
        );
        assert_eq!(
            find(&root, "production").map(|g| g.id.as_str()),
            Some("/production")
        );
        assert!(find(&root, "prod/api/v1").is_none(), "an app is no group");
        assert!(find(&root, "pro").is_none());
    }

    #[test]
    fn an_empty_tree_is_a_root_without_apps_with_a_version() {
        let root = tree(Vec::new());
        assert_eq!(ids(&root), (vec![], vec![]));
        assert_eq!(root.version, EMPTY_VERSION);
    }

    #[test]
    fn embed_picks_apps_groups_and_tasks_and_defaults_to_apps_and_groups() {
        let q = |v: &[&str]| -> Vec<(String, String)> {
            v.iter().map(|e| ("embed".into(), (*e).into())).collect()
        };
        let all = Embed {
            apps: true,
            groups: true,
            tasks: false,
        };
        assert_eq!(Embed::of(&[]), all);
        assert_eq!(Embed::of(&q(&["group.groups", "group.apps"])), all);
        let only_groups = Embed::of(&q(&["group.groups"]));
        assert!(!only_groups.apps && only_groups.groups);
        let tasks = Embed::of(&q(&["group.apps.tasks"]));
        assert!(tasks.apps && tasks.tasks && !tasks.groups);
    }
}
