//! `provider "aws" { ... }` checks: every attribute's type, CIDRs, zones and ids by shape. Nothing
//! here talks to AWS (the AMI lookup and the key file are the provider's, at apply time).

use hcl::Value;

use super::{RawAttr, RawBlock, Validator, valid_cidr};
use crate::spec::model::AwsProvider;

/// Attributes a `provider "aws"` block accepts.
pub(super) const ATTRS: &[&str] = &[
    "region",
    "instance_type",
    "ami",
    "endpoint",
    "ami_name",
    "ami_owners",
    "availability_zones",
    "vpc_cidr",
    "subnet_ids",
    "admin_cidrs",
    "public_key",
    "root_volume_size",
    "root_volume_type",
    "extra_volumes",
    "user_data",
    "private_agents",
];

/// Why an `aws` provider without an image cannot launch anything.
const NO_IMAGE: &str = "provider \"aws\" needs an image: set ami or ami_name";
/// How to give it one.
const IMAGE_HINT: &str = "e.g. ami_name = \"ubuntu/images/hvm-ssd*/ubuntu-*-amd64-server-*\" with ami_owners = [\"099720109477\"] (Canonical), or ami = \"ami-...\" (ids differ per region)";

/// Largest EBS volume (GiB): gp3's limit.
const MAX_VOLUME_GB: u64 = 16_384;

impl Validator<'_> {
    pub(super) fn aws(&mut self, b: &RawBlock) -> AwsProvider {
        let opt = |s: &mut Self, key: &str| b.body.attr(key).and_then(|a| s.string(a, key));
        let list = |s: &mut Self, key: &str| {
            b.body
                .attr(key)
                .and_then(|a| {
                    s.string_list(a, key, |_| true, "a list of strings, e.g. [\"a\", \"b\"]")
                })
                .unwrap_or_default()
        };
        let mut p = AwsProvider {
            region: opt(self, "region"),
            instance_type: opt(self, "instance_type"),
            ami: opt(self, "ami"),
            endpoint: opt(self, "endpoint"),
            ami_name: opt(self, "ami_name"),
            ami_owners: list(self, "ami_owners"),
            availability_zones: list(self, "availability_zones"),
            vpc_cidr: opt(self, "vpc_cidr"),
            subnet_ids: list(self, "subnet_ids"),
            admin_cidrs: list(self, "admin_cidrs"),
            public_key: b
                .body
                .attr("public_key")
                .and_then(|a| self.path(a, "public_key")),
            root_volume_size: b.body.attr("root_volume_size").and_then(|a| {
                self.whole_number(a, "root_volume_size", MAX_VOLUME_GB)
                    .and_then(|n| u32::try_from(n).ok())
            }),
            root_volume_type: opt(self, "root_volume_type"),
            extra_volumes: Vec::new(),
            user_data: opt(self, "user_data"),
            private_agents: b
                .body
                .attr("private_agents")
                .and_then(|a| self.boolean(a, "private_agents"))
                .unwrap_or(false),
        };
        if let Some(a) = b.body.attr("extra_volumes") {
            p.extra_volumes = self.size_list(a).unwrap_or_default();
        }
        // Empty strings mean "not set", as Terraform users write `ami = ""` for "look it up".
        for v in [&mut p.ami, &mut p.region, &mut p.endpoint, &mut p.ami_name] {
            if v.as_deref() == Some("") {
                *v = None;
            }
        }
        for (key, cidrs) in [
            ("admin_cidrs", &p.admin_cidrs),
            ("vpc_cidr", &p.vpc_cidr.iter().cloned().collect()),
        ] {
            if let Some(a) = b.body.attr(key) {
                for c in cidrs.iter().filter(|c| !valid_cidr(c)) {
                    self.err(
                        &a.value_loc,
                        format!("{key}: \"{c}\" is not an IPv4 CIDR"),
                        "e.g. \"203.0.113.0/24\", or \"0.0.0.0/0\" for anywhere",
                    );
                }
            }
        }
        if let (Some(c), Some(a)) = (&p.vpc_cidr, b.body.attr("vpc_cidr"))
            && c.split_once('/')
                .and_then(|(_, b)| b.parse::<u8>().ok())
                .is_some_and(|b| b > 24)
        {
            self.err(
                &a.value_loc,
                format!("vpc_cidr \"{c}\" is too small to cut one subnet per zone out of"),
                "a /16 to /24, e.g. \"10.0.0.0/16\"",
            );
        }
        let shapes: [(&str, &Vec<String>, &str, &str); 2] = [
            (
                "subnet_ids",
                &p.subnet_ids,
                "subnet-",
                "\"subnet-0123456789abcdef0\"",
            ),
            (
                "ami_owners",
                &p.ami_owners,
                "",
                "an account id such as \"099720109477\", or \"amazon\", \"self\"",
            ),
        ];
        for (key, vals, prefix, example) in shapes {
            if let Some(a) = b.body.attr(key) {
                for v in vals
                    .iter()
                    .filter(|v| v.is_empty() || !v.starts_with(prefix))
                {
                    self.err(
                        &a.value_loc,
                        format!("{key}: invalid value \"{v}\""),
                        format!("e.g. {example}"),
                    );
                }
            }
        }
        if let (Some(ami), Some(a)) = (&p.ami, b.body.attr("ami"))
            && !ami.starts_with("ami-")
        {
            self.err(
                &a.value_loc,
                format!("ami \"{ami}\" is not an AMI id"),
                "an id such as \"ami-0123456789abcdef0\" (ids differ per region), or remove it and set ami_name to look one up",
            );
        }
        // A warning, not an error: a definition converted from a dcos-terraform main.tf has no
        // image yet and should still plan; apply refuses it before touching AWS.
        if p.ami.is_none()
            && p.ami_name.is_none()
            && let Some(l) = b.labels.first()
        {
            self.warn(&l.loc, NO_IMAGE, IMAGE_HINT);
        }
        p
    }

    /// `extra_volumes = [100, 200]`: sizes in GiB.
    fn size_list(&mut self, a: &RawAttr) -> Option<Vec<u32>> {
        let hint = format!("sizes in GiB from 1 to {MAX_VOLUME_GB}, e.g. extra_volumes = [100]");
        let Some(Value::Array(vs)) = self.value(a) else {
            self.err(&a.value_loc, "extra_volumes must be a list of sizes", hint);
            return None;
        };
        let mut out = Vec::new();
        for v in vs {
            match v.as_u64().filter(|n| (1..=MAX_VOLUME_GB).contains(n)) {
                Some(n) => out.push(u32::try_from(n).ok()?),
                None => {
                    self.err(
                        &a.value_loc,
                        format!("extra_volumes: invalid size {v}"),
                        hint.clone(),
                    );
                    return None;
                }
            }
        }
        if out.len() > 10 {
            self.err(
                &a.value_loc,
                "extra_volumes: at most 10 volumes per node",
                hint,
            );
            return None;
        }
        Some(out)
    }
}
