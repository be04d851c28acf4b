//! Pool checks: role, count or hosts (and which providers accept which), attributes, and the checks
//! across pools (hosts unique across the cluster, master count and quorum).

use std::collections::BTreeMap;

use hcl::Value;
use hcl::edit::Span;
use hcl::edit::expr::Expression;

use super::super::error::{closest, name_hint};
use super::super::funcs::{scalar_string, type_name};
use super::super::model::*;
use super::super::raw::{Loc, RawAttr, RawBlock};
use super::{MAX_COUNT, POOL_ATTRS, ROLES, Validator};

impl Validator<'_> {
    /// One pool; returns it with the location of its name.
    pub(super) fn pool(
        &mut self,
        b: &RawBlock,
        provider: Option<ProviderKind>,
    ) -> Option<(PoolSpec, Loc)> {
        let label = self.single_label(b, "pool", "pool \"agents\" { ... }");
        if let Some(l) = &label {
            self.check_name(l, "pool");
        }
        let what = match &label {
            Some(l) => format!("pool \"{}\"", l.name),
            None => "pool".to_string(),
        };
        self.check_body(&b.body, &what, POOL_ATTRS, &[]);
        let name_loc = label
            .as_ref()
            .map_or_else(|| b.ident_loc.clone(), |l| l.loc.clone());

        let role = match b.body.attr("role") {
            None => {
                self.err(
                    &name_loc,
                    format!("{what} has no role"),
                    format!("add: role = \"agent\" (valid roles: {})", ROLES.join(", ")),
                );
                None
            }
            Some(a) => self.string(a, "role").and_then(|r| {
                let role = Role::parse(&r);
                if role.is_none() {
                    self.err(
                        &a.value_loc,
                        format!("unknown role \"{r}\" in {what}"),
                        name_hint(&r, "roles", ROLES),
                    );
                }
                role
            }),
        };

        let count_attr = b.body.attr("count");
        let hosts_attr = b.body.attr("hosts");
        let is_ssh = provider == Some(ProviderKind::Ssh);
        let size = match (count_attr, hosts_attr) {
            (Some(c), Some(_)) => {
                self.err(
                    &c.key_loc,
                    format!("{what} sets both count and hosts"),
                    if is_ssh {
                        "provider \"ssh\" uses hosts: remove count"
                    } else {
                        "remove hosts: only provider \"ssh\" accepts hosts; the others take count"
                    },
                );
                None
            }
            // A misspelled `count`/`hosts` is already reported as unknown with a "did you mean".
            (None, None)
                if b.body.attrs.iter().any(|a| {
                    closest(&a.key, ["count", "hosts"]).is_some()
                        && !POOL_ATTRS.contains(&a.key.as_str())
                }) =>
            {
                None
            }
            (None, None) => {
                let hint = if is_ssh {
                    "add: hosts = [\"192.0.2.10\", ...]"
                } else {
                    "add: count = 1"
                };
                self.err(
                    &name_loc,
                    format!("{what} has neither count nor hosts"),
                    hint,
                );
                None
            }
            (Some(c), None) => {
                let n = self
                    .whole_number(c, "count", u64::from(MAX_COUNT))
                    .and_then(|n| u32::try_from(n).ok());
                if is_ssh {
                    self.err(&c.key_loc, format!("provider \"ssh\" cannot create machines: {what} must list hosts"), "replace count with hosts = [\"192.0.2.10\", ...]; count is for providers local, docker and aws");
                    None
                } else {
                    n.map(PoolSize::Count)
                }
            }
            (None, Some(h)) => {
                let hosts = self.hosts(h, &what);
                match provider {
                    Some(p) if p != ProviderKind::Ssh => {
                        self.err(&h.key_loc, format!("provider \"{p}\" creates its machines: {what} cannot list hosts"), "hosts is accepted only by provider \"ssh\"; use count = N with local, docker and aws");
                        None
                    }
                    _ => hosts.map(|v| PoolSize::Hosts(v.into_iter().map(|(s, _)| s).collect())),
                }
            }
        };

        let attributes = match b.body.attr("attributes") {
            None => BTreeMap::new(),
            Some(a) => {
                let map = self.string_map(a, "attributes").unwrap_or_default();
                for (k, v) in &map {
                    if let Err(why) = agent_attribute(k, v) {
                        self.err(&a.value_loc, format!("attribute {k} = \"{v}\": {why}"), "names and values without `;` or `:` and with no surrounding spaces, e.g. rack = \"r1\"");
                    }
                }
                map
            }
        };
        let resources = b.body.attr("resources").and_then(|a| {
            let s = self.string(a, "resources")?;
            // The very parser `dccore agent --resources` runs on the node.
            let parsed = dccore_api::proto::Resources::parse(&s);
            if let Err(e) = &parsed {
                self.err(
                    &a.value_loc,
                    format!("resources \"{s}\": {e}"),
                    "write NAME:VALUE pairs of cpus, mem (MiB), disk (MiB) and ports separated by `;`, e.g. \"cpus:2;mem:1024;ports:[31000-32000]\"",
                );
                return None;
            }
            if s.trim().is_empty() {
                self.err(
                    &a.value_loc,
                    "resources \"\" names no resource",
                    "leave resources out to use what each node has, or write e.g. \"cpus:2;mem:1024\"",
                );
                return None;
            }
            Some(s)
        });
        let instance_type = b.body.attr("instance_type").and_then(|a| {
            let s = self.string(a, "instance_type")?;
            if let Some(p) = provider.filter(|p| *p != ProviderKind::Aws) {
                self.warn(
                    &a.key_loc,
                    format!("instance_type is ignored by provider \"{p}\""),
                    "only provider \"aws\" sizes machines",
                );
            }
            Some(s)
        });
        // check_name reported an invalid name already; PoolName::new is that same rule.
        let name = PoolName::new(label?.name).ok();
        let (name, role, size) = (name?, role?, size?);
        Some((
            PoolSpec {
                name,
                role,
                size,
                attributes,
                resources,
                instance_type,
            },
            name_loc,
        ))
    }

    /// A list of host strings with the location of each (when written as a literal list).
    fn hosts(&mut self, a: &RawAttr, what: &str) -> Option<Vec<(String, Loc)>> {
        let items: Vec<(Value, Loc)> = match &a.value {
            Expression::Array(arr) => {
                let mut out = Vec::new();
                for e in arr.iter() {
                    let loc = Loc {
                        file: a.value_loc.file,
                        span: e.span().unwrap_or_else(|| a.value_loc.span.clone()),
                    };
                    match self.ev.eval(self.sources, e, &loc) {
                        Ok(v) => out.push((v, loc)),
                        Err(ds) => self.diags.errors(ds),
                    }
                }
                out
            }
            _ => match self.value(a)? {
                Value::Array(vs) => vs.into_iter().map(|v| (v, a.value_loc.clone())).collect(),
                v => {
                    self.err(
                        &a.value_loc,
                        format!("hosts must be a list of strings, got {}", type_name(&v)),
                        "write: hosts = [\"192.0.2.10\", \"192.0.2.11\"]",
                    );
                    return None;
                }
            },
        };
        let mut hosts: Vec<(String, Loc)> = Vec::new();
        let mut ok = true;
        if items.is_empty() {
            self.err(
                &a.value_loc,
                format!("{what} has an empty hosts list"),
                "list at least one host, or remove the pool",
            );
            return None;
        }
        for (v, loc) in items {
            let Value::String(s) = v else {
                self.err(
                    &loc,
                    format!("a host must be a string, got {}", type_name(&v)),
                    "write: hosts = [\"192.0.2.10\"]",
                );
                ok = false;
                continue;
            };
            if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == ',' || c == '/') {
                self.err(
                    &loc,
                    format!("invalid host \"{s}\""),
                    "a host name or IP address such as \"192.0.2.10\"",
                );
                ok = false;
                continue;
            }
            if let Some((_, prev)) = hosts.iter().find(|(h, _)| *h == s) {
                let line = self.line(prev);
                self.err(
                    &loc,
                    format!("host \"{s}\" is listed twice in {what}"),
                    format!("first listed on line {line}"),
                );
                ok = false;
                continue;
            }
            hosts.push((s, loc));
        }
        ok.then_some(hosts)
    }

    fn string_map(&mut self, a: &RawAttr, what: &str) -> Option<BTreeMap<String, String>> {
        match self.value(a)? {
            Value::Object(o) => {
                let mut out = BTreeMap::new();
                for (k, v) in o {
                    match scalar_string(&v) {
                        Ok(s) => {
                            out.insert(k, s);
                        }
                        Err(_) => self.err(
                            &a.value_loc,
                            format!("{what} \"{k}\" must be a string, got {}", type_name(&v)),
                            "values are strings, numbers or bools",
                        ),
                    }
                }
                Some(out)
            }
            v => {
                self.err(
                    &a.value_loc,
                    format!("{what} must be a map, got {}", type_name(&v)),
                    format!("write: {} = {{ rack = \"r1\" }}", a.key),
                );
                None
            }
        }
    }

    /// Hosts are unique across pools: one machine cannot be two nodes.
    pub(super) fn check_hosts_unique(
        &mut self,
        pools: &[(PoolSpec, Loc)],
        host_locs: &BTreeMap<String, Vec<(String, Loc)>>,
    ) {
        let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
        for (p, pool_loc) in pools {
            let PoolSize::Hosts(hosts) = &p.size else {
                continue;
            };
            for h in hosts {
                if let Some(first) = seen.get(h.as_str()) {
                    if *first != p.name.as_str() {
                        let loc = host_locs
                            .get(p.name.as_str())
                            .and_then(|v| v.iter().find(|(s, _)| s == h).map(|(_, l)| l.clone()))
                            .unwrap_or_else(|| pool_loc.clone());
                        self.err(
                            &loc,
                            format!(
                                "host \"{h}\" is in pool \"{}\" and in pool \"{first}\"",
                                p.name
                            ),
                            "a host can be in only one pool",
                        );
                    }
                } else {
                    seen.insert(h, &p.name);
                }
            }
        }
    }

    pub(super) fn check_masters(&mut self, cluster: &RawBlock, pools: &[(PoolSpec, Loc)]) {
        let masters: usize = pools
            .iter()
            .filter(|(p, _)| p.role == Role::Master)
            .map(|(p, _)| p.size.len())
            .sum();
        let loc = cluster
            .labels
            .first()
            .map_or_else(|| cluster.ident_loc.clone(), |l| l.loc.clone());
        let at = pools
            .iter()
            .find(|(p, _)| p.role == Role::Master)
            .map_or_else(|| loc.clone(), |(_, l)| l.clone());
        match masters_verdict(masters) {
            Ok(()) => {}
            Err((message, hint)) if masters == 0 => self.err(&loc, message, hint),
            Err((message, hint)) => self.err(&at, message, hint),
        }
    }
}

/// Whether `n` masters make a replicated group worth having: 1, 3 or 5. The masters are one Raft
/// group, and every change waits for a majority of it, so: an even count tolerates no more losses
/// than the odd count below it (2 of 2 survive no loss; 4 tolerate one loss, like 3, at more
/// cost), and more than 5 only makes every write wait for more masters. `Err((message, hint))`.
pub(crate) fn masters_verdict(n: usize) -> Result<(), (String, String)> {
    match n {
        1 | 3 | 5 => Ok(()),
        0 => Err((
            "cluster has no master".into(),
            "add a pool with role = \"master\" and count = 1, 3 or 5".into(),
        )),
        2 => Err((
            "2 masters: the masters' group needs a majority (2 of 2) for every change, so losing either master stops the cluster: no better than 1, with twice the machines".into(),
            "use count = 1, or 3 to survive the loss of one master".into(),
        )),
        4 => Err((
            "4 masters: a majority of 4 is 3, so 4 masters survive the loss of one master, like 3, at the cost of one more machine and one more copy of every write".into(),
            "use count = 3 (survives one lost master) or 5 (survives two)".into(),
        )),
        n => Err((
            format!("{n} masters: every change to the cluster waits until a majority of the masters ({}) has written it, so more than 5 masters slow every write and add little safety", n / 2 + 1),
            "use count = 5 (survives two lost masters) or 3 (survives one)".into(),
        )),
    }
}

/// Locations of literal host entries per pool name, for placing cross-pool duplicate errors.
pub(super) fn pool_blocks_hosts(cluster: &RawBlock) -> BTreeMap<String, Vec<(String, Loc)>> {
    let mut out = BTreeMap::new();
    for b in cluster.body.blocks.iter().filter(|b| b.ident == "pool") {
        let (Some(label), Some(a)) = (b.labels.first(), b.body.attr("hosts")) else {
            continue;
        };
        let Expression::Array(arr) = &a.value else {
            continue;
        };
        let entries = arr
            .iter()
            .filter_map(|e| {
                let s = e.as_str()?.to_string();
                Some((
                    s,
                    Loc {
                        file: a.value_loc.file,
                        span: e.span().unwrap_or_else(|| a.value_loc.span.clone()),
                    },
                ))
            })
            .collect();
        out.insert(label.name.clone(), entries);
    }
    out
}

/// Whether `name = "value"` reaches the node as that very attribute: install passes the map to
/// `dccore agent --attributes` as `name:value;...`, which the agent reads with
/// [`dccore_api::proto::parse_attributes`]; the same parser reads it back here.
fn agent_attribute(name: &str, value: &str) -> Result<(), String> {
    let parsed = dccore_api::proto::parse_attributes(&format!("{name}:{value}"))
        .map_err(|e| e.to_string())?;
    match parsed.as_slice() {
        [one] if one.name == name && one.text.value == value => Ok(()),
        _ => Err(format!(
            "dccore would read it as {}",
            parsed
                .iter()
                .map(|a| format!("{}:{:?}", a.name, a.text.value))
                .collect::<Vec<_>>()
                .join(" and ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_1_3_or_5_masters_are_accepted_and_the_refusal_says_why() {
        for ok in [1, 3, 5] {
            assert_eq!(masters_verdict(ok), Ok(()), "{ok} masters");
        }
        let why = |n| masters_verdict(n).expect_err("refused");
        assert!(why(0).0.contains("no master"));
        assert!(why(2).0.contains("2 of 2"), "{:?}", why(2));
        assert!(why(2).1.contains("3"));
        assert!(why(4).0.contains("like 3"), "{:?}", why(4));
        assert!(why(4).1.contains("count = 3") && why(4).1.contains("5"));
        let (m, h) = why(7);
        assert!(m.contains("majority of the masters (4)"), "{m}");
        assert!(h.contains("count = 5"));
        assert!(why(6).0.contains("more than 5"));
    }

    #[test]
    fn attributes_must_reach_the_agent_unchanged() {
        assert_eq!(agent_attribute("rack", "r1"), Ok(()));
        assert!(agent_attribute("rack", "r1;zone").is_err());
        assert!(agent_attribute("ra:ck", "r1").is_err());
        assert!(agent_attribute("rack", " r1").is_err());
    }
}
