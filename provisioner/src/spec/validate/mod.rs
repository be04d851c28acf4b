//! `RawBlock` (the `cluster` block with spans) -> validated [`ClusterSpec`].
//!
//! Every check of the definition lives here, and every failure names `file:line:col` and what would have
//! been valid. Checks continue past the first error so one run reports as much as possible.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use dcform_model::MAX_NAME;
use hcl::Value;

use super::error::{Diags, name_hint};
use super::eval::Evaluator;
use super::funcs::{expand_home, scalar_string, type_name};
use super::model::*;
use super::raw::{Loc, RawAttr, RawBlock, RawBody, RawLabel, Sources};
use super::vars::check_duplicate_attrs;

mod aws;
mod pool;
mod principal;
mod service;

const CLUSTER_BLOCKS: &[&str] = &["provider", "ssh", "core", "pool", "principal", "service"];
/// The provider names, from the one list of kinds (a new kind is named in hints without an edit here).
const PROVIDERS: [&str; ProviderKind::ALL.len()] = {
    let mut names = [""; ProviderKind::ALL.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = ProviderKind::ALL[i].as_str();
        i += 1;
    }
    names
};
const SSH_ATTRS: &[&str] = &["user", "private_key", "port", "known_hosts", "bastion"];
const CORE_ATTRS: &[&str] = &["version", "config", "tls", "task_user"];
const POOL_ATTRS: &[&str] = &[
    "role",
    "count",
    "hosts",
    "attributes",
    "resources",
    "instance_type",
];
const ROLES: &[&str] = &["master", "agent", "public_agent"];

/// Most nodes one pool may ask for: far above any real cluster, low enough that a typo (`count = 1e9`)
/// does not make the planner allocate a billion nodes.
pub(crate) const MAX_COUNT: u32 = 100_000;

fn provider_attrs(kind: ProviderKind) -> &'static [&'static str] {
    match kind {
        ProviderKind::Local => &["base_port"],
        ProviderKind::Docker => &["image", "subnet"],
        ProviderKind::Aws => aws::ATTRS,
        ProviderKind::Ssh => &[],
    }
}

/// Lowest `base_port` of the local provider: its nodes run without root.
const MIN_BASE_PORT: u16 = 1024;

/// What validation needs besides the raw block.
pub(crate) struct Validator<'a> {
    pub sources: &'a Sources,
    pub ev: &'a Evaluator<'a>,
    pub dir: &'a Path,
    pub env: &'a BTreeMap<String, String>,
    pub diags: &'a mut Diags,
}

impl Validator<'_> {
    fn err(&mut self, loc: &Loc, message: impl Into<String>, hint: impl Into<String>) {
        let d = self.sources.diag(loc, message, hint);
        self.diags.error(d);
    }

    fn warn(&mut self, loc: &Loc, message: impl Into<String>, hint: impl Into<String>) {
        let d = self.sources.diag(loc, message, hint);
        self.diags.warn(d);
    }

    /// Validates the cluster block into a spec. Returns `None` when anything is wrong (the reasons are
    /// in `diags`).
    pub fn cluster(&mut self, block: &RawBlock) -> Option<ClusterSpec> {
        let before = self.diags.errors.len();
        let name = self
            .single_label(block, "cluster", "cluster \"demo\" { ... }")
            .map(|l| {
                self.check_name(&l, "cluster");
                l.name
            });
        self.check_body(&block.body, "cluster", &[], CLUSTER_BLOCKS);

        let providers: Vec<&RawBlock> = block
            .body
            .blocks
            .iter()
            .filter(|b| b.ident == "provider")
            .collect();
        let provider = match providers.as_slice() {
            [] => {
                self.err(
                    &block.ident_loc,
                    "cluster has no provider block",
                    format!(
                        "add one of: {}",
                        PROVIDERS
                            .iter()
                            .map(|p| format!("provider \"{p}\" {{}}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                None
            }
            [first, rest @ ..] => {
                for extra in rest {
                    self.err(
                        &extra.ident_loc,
                        "a cluster has exactly one provider block",
                        format!(
                            "remove this one or the one on line {}",
                            self.line(&first.ident_loc)
                        ),
                    );
                }
                self.provider(first)
            }
        };

        let ssh = self
            .at_most_one(&block.body, "ssh")
            .map(|b| self.ssh(b))
            .unwrap_or_default();
        let mut core = self
            .at_most_one(&block.body, "core")
            .map(|b| self.core(b))
            .unwrap_or_default();
        let task_user = core.task_user.clone();
        for pb in block.body.blocks.iter().filter(|b| b.ident == "principal") {
            if let Some(p) = self.principal(pb, &task_user) {
                if core.principals.iter().any(|q| q.name == p.name) {
                    self.err(
                        &pb.ident_loc,
                        format!("duplicate principal \"{}\"", p.name),
                        "principal names must be unique",
                    );
                    continue;
                }
                core.principals.push(p);
            }
        }

        let pool_blocks: Vec<&RawBlock> = block
            .body
            .blocks
            .iter()
            .filter(|b| b.ident == "pool")
            .collect();
        if pool_blocks.is_empty() {
            self.err(&block.ident_loc, "cluster has no pool block", "add pools, e.g. pool \"masters\" { role = \"master\" ... count = 1 } (one attribute per line)");
        }
        let kind = provider.as_ref().map(ProviderSpec::kind);
        let mut pools: Vec<(PoolSpec, Loc)> = Vec::new();
        let mut pool_errors = false;
        for pb in pool_blocks {
            let errs = self.diags.errors.len();
            if let Some((pool, loc)) = self.pool(pb, kind) {
                if let Some((_, prev)) = pools.iter().find(|(p, _)| p.name == pool.name) {
                    let line = self.line(prev);
                    self.err(
                        &loc,
                        format!("duplicate pool name \"{}\"", pool.name),
                        format!(
                            "pool names must be unique; the first \"{}\" is on line {line}",
                            pool.name
                        ),
                    );
                }
                pools.push((pool, loc));
            }
            pool_errors |= self.diags.errors.len() > errs;
        }
        self.check_hosts_unique(&pools, &pool::pool_blocks_hosts(block));
        if !pool_errors && !pools.is_empty() {
            self.check_masters(block, &pools);
        }
        let services = self.services(block);
        if self.diags.errors.len() > before {
            return None;
        }
        Some(ClusterSpec {
            name: name?,
            provider: provider?,
            ssh,
            core,
            pools: pools.into_iter().map(|(p, _)| p).collect(),
            services,
            definition_dir: self.dir.to_path_buf(),
        })
    }

    /// The `service` blocks in definition order; two with one app id are an error naming both.
    fn services(&mut self, block: &RawBlock) -> Vec<ServiceSpec> {
        let mut out: Vec<(ServiceSpec, Loc)> = Vec::new();
        for sb in block.body.blocks.iter().filter(|b| b.ident == "service") {
            let Some((svc, loc)) = self.service(sb) else {
                continue;
            };
            if let Some((first, first_loc)) = out.iter().find(|(s, _)| s.id == svc.id) {
                let (name, line) = (first.name.clone(), self.line(first_loc));
                self.err(
                    &loc,
                    format!(
                        "service \"{}\": app id {} is also the id of service \"{name}\" (line {line})",
                        svc.name, svc.id
                    ),
                    "app ids are unique in a cluster: give one of them another id (id = \"/...\") or name",
                );
                continue;
            }
            out.push((svc, loc));
        }
        out.into_iter().map(|(s, _)| s).collect()
    }

    fn line(&self, loc: &Loc) -> usize {
        self.sources.line_col(loc.file, loc.span.start).0
    }

    /// The one label of a block like `pool "agents"`.
    fn single_label(&mut self, b: &RawBlock, what: &str, example: &str) -> Option<RawLabel> {
        match b.labels.as_slice() {
            [one] => Some(one.clone()),
            [] => {
                self.err(
                    &b.ident_loc,
                    format!("{what} block needs a name"),
                    format!("write: {example}"),
                );
                None
            }
            [_, extra, ..] => {
                self.err(
                    &extra.loc,
                    format!("{what} block takes one name, got {}", b.labels.len()),
                    format!("write: {example}"),
                );
                None
            }
        }
    }

    fn check_name(&mut self, l: &RawLabel, what: &str) {
        let n = &l.name;
        if !dcform_model::valid_name(n) {
            self.err(
                &l.loc,
                format!("invalid {what} name \"{n}\""),
                format!("{what} names become host and container names: lowercase letters, digits and `-`, starting with a letter, at most {MAX_NAME} characters (e.g. \"{}\")", if what == "pool" { "public-agents" } else { "demo-1" }),
            );
        }
    }

    /// Rejects unknown attributes and blocks in a body (with a "did you mean") and duplicate attributes.
    fn check_body(&mut self, body: &RawBody, what: &str, attrs: &[&str], blocks: &[&str]) {
        check_duplicate_attrs(self.sources, &body.attrs, what, self.diags);
        for a in &body.attrs {
            if attrs.contains(&a.key.as_str()) {
                continue;
            }
            let hint = if blocks.contains(&a.key.as_str()) {
                format!(
                    "\"{k}\" is a block: write {k} {{ ... }} over several lines",
                    k = a.key
                )
            } else if attrs.is_empty() {
                format!(
                    "{what} takes no attributes; valid blocks: {}",
                    blocks.join(", ")
                )
            } else {
                name_hint(&a.key, "attributes", attrs)
            };
            self.err(
                &a.key_loc,
                format!("unknown attribute \"{}\" in {what}", a.key),
                hint,
            );
        }
        for b in &body.blocks {
            if blocks.contains(&b.ident.as_str()) {
                continue;
            }
            let hint = if attrs.contains(&b.ident.as_str()) {
                format!("\"{k}\" is an attribute: write {k} = ...", k = b.ident)
            } else if blocks.is_empty() {
                format!(
                    "{what} takes no blocks; valid attributes: {}",
                    attrs.join(", ")
                )
            } else {
                name_hint(&b.ident, "blocks", blocks)
            };
            self.err(
                &b.ident_loc,
                format!("unknown block \"{}\" in {what}", b.ident),
                hint,
            );
        }
    }

    fn at_most_one<'b>(&mut self, body: &'b RawBody, ident: &str) -> Option<&'b RawBlock> {
        let found: Vec<&RawBlock> = body.blocks.iter().filter(|b| b.ident == ident).collect();
        for extra in found.iter().skip(1) {
            let line = self.line(&found[0].ident_loc);
            self.err(
                &extra.ident_loc,
                format!("more than one {ident} block"),
                format!("merge it into the {ident} block on line {line}"),
            );
        }
        let first = found.first().copied()?;
        if let Some(l) = first.labels.first() {
            self.err(
                &l.loc,
                format!("{ident} block takes no name"),
                format!("write: {ident} {{ ... }}"),
            );
        }
        Some(first)
    }

    // --- values ---------------------------------------------------------------------------------

    /// Evaluates an attribute; `null` counts as "not set", as in Terraform.
    fn value(&mut self, a: &RawAttr) -> Option<Value> {
        match self.ev.eval(self.sources, &a.value, &a.value_loc) {
            Ok(Value::Null) => None,
            Ok(v) => Some(v),
            Err(ds) => {
                self.diags.errors(ds);
                None
            }
        }
    }

    fn string(&mut self, a: &RawAttr, what: &str) -> Option<String> {
        let v = self.value(a)?;
        match scalar_string(&v) {
            Ok(s) => Some(s),
            Err(_) => {
                self.err(
                    &a.value_loc,
                    format!("{what} must be a string, got {}", type_name(&v)),
                    format!("write: {} = \"...\"", a.key),
                );
                None
            }
        }
    }

    fn whole_number(&mut self, a: &RawAttr, what: &str, max: u64) -> Option<u64> {
        let v = self.value(a)?;
        let n = match &v {
            Value::Number(n) => Some(*n),
            Value::String(s) => super::funcs::parse_number(s),
            _ => None,
        };
        let hint = format!("a whole number from 0 to {max}");
        let Some(n) = n else {
            self.err(
                &a.value_loc,
                format!(
                    "{what} must be a number, got {} {}",
                    type_name(&v),
                    short_value(&v)
                ),
                hint,
            );
            return None;
        };
        if let Some(u) = n.as_u64() {
            if u <= max {
                return Some(u);
            }
            self.err(&a.value_loc, format!("{what} is too large: {u}"), hint);
            return None;
        }
        let f = n.as_f64().unwrap_or(f64::NAN);
        if f < 0.0 {
            self.err(
                &a.value_loc,
                format!("{what} must not be negative, got {n}"),
                hint,
            );
        } else if f.fract() != 0.0 {
            self.err(
                &a.value_loc,
                format!("{what} must be a whole number, got {n}"),
                hint,
            );
        } else {
            self.err(&a.value_loc, format!("{what} is too large: {n}"), hint);
        }
        None
    }

    fn path(&mut self, a: &RawAttr, what: &str) -> Option<PathBuf> {
        let s = self.string(a, what)?;
        match expand_home(&s, self.env) {
            Ok(p) => {
                let p = PathBuf::from(p);
                Some(if p.is_absolute() { p } else { self.dir.join(p) })
            }
            Err(e) => {
                self.err(&a.value_loc, format!("{what}: {e}"), "use an absolute path");
                None
            }
        }
    }

    // --- blocks ---------------------------------------------------------------------------------

    fn provider(&mut self, b: &RawBlock) -> Option<ProviderSpec> {
        let label = self.single_label(b, "provider", "provider \"local\" {}")?;
        let Some(kind) = ProviderKind::parse(&label.name) else {
            self.err(
                &label.loc,
                format!("unknown provider \"{}\"", label.name),
                name_hint(&label.name, "providers", &PROVIDERS),
            );
            return None;
        };
        let what = format!("provider \"{kind}\"");
        self.check_body(&b.body, &what, provider_attrs(kind), &[]);
        let opt = |s: &mut Self, key: &str| b.body.attr(key).and_then(|a| s.string(a, key));
        Some(match kind {
            ProviderKind::Local => ProviderSpec::Local(LocalProvider {
                base_port: match b.body.attr("base_port") {
                    Some(a) => {
                        let p = self
                            .whole_number(a, "base_port", u64::from(u16::MAX))
                            .and_then(|n| u16::try_from(n).ok())?;
                        if p != 0 && p < MIN_BASE_PORT {
                            self.err(
                                &a.value_loc,
                                format!("base_port {p} is below {MIN_BASE_PORT}"),
                                format!("local nodes run without root: a port from {MIN_BASE_PORT} up, or 0 to let the system pick free ports"),
                            );
                        }
                        p
                    }
                    None => 0,
                },
            }),
            ProviderKind::Docker => {
                let image = opt(self, "image");
                let subnet = opt(self, "subnet");
                if let (Some(s), Some(a)) = (&subnet, b.body.attr("subnet"))
                    && !valid_cidr(s)
                {
                    self.err(
                        &a.value_loc,
                        format!("subnet \"{s}\" is not an IPv4 CIDR"),
                        "e.g. \"10.250.3.0/24\"",
                    );
                }
                ProviderSpec::Docker(DockerProvider { image, subnet })
            }
            ProviderKind::Ssh => ProviderSpec::Ssh(SshProvider {}),
            ProviderKind::Aws => ProviderSpec::Aws(Box::new(self.aws(b))),
        })
    }

    fn ssh(&mut self, b: &RawBlock) -> SshSpec {
        self.check_body(&b.body, "ssh", SSH_ATTRS, &[]);
        let mut spec = SshSpec::default();
        if let Some(a) = b.body.attr("user")
            && let Some(u) = self.string(a, "user")
        {
            if u.is_empty() || u.chars().any(|c| c.is_whitespace() || c == '@') {
                self.err(
                    &a.value_loc,
                    format!("invalid ssh user \"{u}\""),
                    "a login name such as \"root\" or \"core\"",
                );
            } else {
                spec.user = u;
            }
        }
        if let Some(a) = b.body.attr("port") {
            match self
                .whole_number(a, "ssh port", u64::from(u16::MAX))
                .and_then(|n| u16::try_from(n).ok())
            {
                Some(0) => self.err(
                    &a.value_loc,
                    "ssh port must not be 0",
                    "a port from 1 to 65535, usually 22",
                ),
                Some(p) => spec.port = p,
                None => {}
            }
        }
        spec.private_key = b
            .body
            .attr("private_key")
            .and_then(|a| self.path(a, "private_key"));
        spec.known_hosts = b
            .body
            .attr("known_hosts")
            .and_then(|a| self.path(a, "known_hosts"));
        if let Some(a) = b.body.attr("bastion")
            && let Some(text) = self.string(a, "bastion")
        {
            spec.bastion = Bastion::parse(&text);
            if spec.bastion.is_none() {
                self.err(
                    &a.value_loc,
                    format!("bastion \"{text}\" is not of the form [user@]host[:port]"),
                    "e.g. \"ops@jump.example.com:2222\" or \"10.0.0.5\"",
                );
            }
        }
        spec
    }

    fn core(&mut self, b: &RawBlock) -> CoreSpec {
        self.check_body(&b.body, "core", CORE_ATTRS, &[]);
        let mut spec = CoreSpec::default();
        if let Some(a) = b.body.attr("version") {
            match self.string(a, "core version") {
                Some(v) if v.trim().is_empty() => self.err(
                    &a.value_loc,
                    "core version is empty",
                    "\"bundled\" or a version such as \"0.1.0\"",
                ),
                Some(v) => spec.version = v,
                None => {}
            }
        }
        if let Some(a) = b.body.attr("tls")
            && let Some(t) = self.boolean(a, "core tls")
        {
            spec.tls = t;
            if !t {
                self.warn(
                    &a.value_loc,
                    "core { tls = false }: every dccore API serves plain HTTP, so tokens and framework secrets cross the network in clear text",
                    "keep it only for clients that cannot do TLS (pymesos); remove it to serve HTTPS with the cluster CA",
                );
            }
        }
        if let Some(a) = b.body.attr("task_user")
            && let Some(u) = self.task_user(a)
        {
            spec.task_user = u;
        }
        if let Some(a) = b.body.attr("config") {
            match self.value(a) {
                Some(Value::Object(o)) => {
                    for (k, v) in o {
                        let normalised = serde_json::to_value(&v)
                            .map_err(|e| format!("core config \"{k}\": {e}"))
                            .and_then(|j| super::core_config::normalise(&k, &j));
                        match normalised {
                            Ok((key, j)) => {
                                spec.config.insert(key.to_string(), j);
                            }
                            Err(e) => {
                                let hint = if e.starts_with("unknown core config key") {
                                    super::error::name_hint(
                                        &k,
                                        "core config keys",
                                        &super::core_config::known_names(),
                                    )
                                } else {
                                    String::new()
                                };
                                self.err(&a.value_loc, e, hint)
                            }
                        }
                    }
                }
                Some(v) => self.err(
                    &a.value_loc,
                    format!("core config must be a map, got {}", type_name(&v)),
                    "write: config = { agent_ping_timeout = \"2s\" }",
                ),
                None => {}
            }
        }
        spec
    }
}

fn short_value(v: &Value) -> String {
    let s = serde_json::to_string(v).unwrap_or_default();
    if s.chars().count() > 40 {
        format!("{}...", s.chars().take(37).collect::<String>())
    } else {
        s
    }
}

pub(crate) fn valid_cidr(s: &str) -> bool {
    let Some((ip, bits)) = s.split_once('/') else {
        return false;
    };
    ip.parse::<Ipv4Addr>().is_ok() && bits.parse::<u8>().is_ok_and(|b| b <= 32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_recognised() {
        assert!(valid_cidr("10.250.3.0/24"));
        assert!(!valid_cidr("10.250.3.0"));
        assert!(!valid_cidr("10.250.3.0/33"));
    }
}
