//! The tags dcform puts on everything it creates. `destroy --cluster NAME` finds a cluster by
//! [`CLUSTER`], so every resource carries it from its creation call on (tag specifications, never a
//! later CreateTags), and nothing survives a destroy unnoticed. [`LINEAGE`] (the state's lineage)
//! tells apart two clusters of one name in one account: a client made with a lineage
//! ([`Settings::lineage`](crate::Settings::lineage)) tags with it and finds only what carries it.

use aws_sdk_ec2::types::{Filter, ResourceType, Tag, TagSpecification};

use crate::Ec2;

/// The cluster's name. On every resource.
pub const CLUSTER: &str = "dcform:cluster";
/// The lineage of the state that made the resource (a uuid): one cluster history.
pub const LINEAGE: &str = "dcform:lineage";
/// The pool of an instance.
pub const POOL: &str = "dcform:pool";
/// The role of an instance's pool (`master`, `agent`, `public_agent`).
pub const ROLE: &str = "dcform:role";
/// The node an instance is (`agents-3`). Set by CreateTags right after a batched launch; until then
/// [`INDICES`] and the launch index say which node an instance is.
pub const NODE: &str = "dcform:node";
/// The node indices of a batched launch, in launch-index order (`1-3,7`): an instance launched
/// with MinCount = N is node `INDICES[ami_launch_index]` of its pool, even if dcform was killed
/// before it could tag it with [`NODE`].
pub const INDICES: &str = "dcform:indices";
/// Which part of the network a resource is (`vpc`, `subnet`, `nodes`, `admin`, `public`...).
pub const PART: &str = "dcform:part";

/// A tag.
pub(crate) fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// Tags on a resource created for `cluster` at creation time.
pub(crate) fn spec(kind: ResourceType, tags: Vec<Tag>) -> TagSpecification {
    TagSpecification::builder()
        .resource_type(kind)
        .set_tags(Some(tags))
        .build()
}

/// `tag:dcform:cluster = cluster`.
pub(crate) fn cluster_filter(cluster: &str) -> Filter {
    Filter::builder()
        .name(format!("tag:{CLUSTER}"))
        .values(cluster)
        .build()
}

impl Ec2 {
    /// What finds `cluster`'s resources: its tag, and its lineage's when the client has one.
    pub(crate) fn scope(&self, cluster: &str) -> Vec<Filter> {
        let mut f = vec![cluster_filter(cluster)];
        if let Some(l) = &self.lineage {
            f.push(
                Filter::builder()
                    .name(format!("tag:{LINEAGE}"))
                    .values(l)
                    .build(),
            );
        }
        f
    }

    /// `more` after the tags naming `cluster` (and the client's lineage): a new resource's tags.
    pub(crate) fn tagged(&self, cluster: &str, more: Vec<Tag>) -> Vec<Tag> {
        let mut t = vec![tag(CLUSTER, cluster)];
        t.extend(self.lineage.iter().map(|l| tag(LINEAGE, l)));
        t.extend(more);
        t
    }
}

/// A tag's value among `tags`.
pub(crate) fn value<'a>(tags: &'a [Tag], key: &str) -> Option<&'a str> {
    tags.iter()
        .find(|t| t.key() == Some(key))
        .and_then(Tag::value)
}

/// `1,2,3,7` -> `1-3,7`. Keeps the order given (launch-index order), collapsing ascending runs.
pub fn encode_indices(indices: &[u32]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        out.push(if j > i {
            format!("{}-{}", indices[i], indices[j])
        } else {
            indices[i].to_string()
        });
        i = j + 1;
    }
    out.join(",")
}

/// The inverse of [`encode_indices`]; `None` for anything dcform did not write.
pub fn decode_indices(s: &str) -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.parse().ok()?, b.parse().ok()?);
                // A range a tag could hold: bounded so a hand-edited tag cannot blow up memory.
                if b < a || b - a > 10_000 {
                    return None;
                }
                out.extend(a..=b);
            }
            None => out.push(part.parse().ok()?),
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indices_round_trip_in_launch_order() {
        for v in [vec![1], vec![1, 2, 3, 7], vec![4, 9, 10, 11, 2], vec![]] {
            let s = encode_indices(&v);
            if v.is_empty() {
                continue;
            }
            assert_eq!(decode_indices(&s), Some(v.clone()), "{s}");
        }
        assert_eq!(encode_indices(&[1, 2, 3, 7]), "1-3,7");
        assert_eq!(decode_indices("3-1"), None);
        assert_eq!(decode_indices("x"), None);
    }
}
