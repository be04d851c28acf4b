//! [`Resources`]: the arithmetic form of a Mesos resource list (cpus, mem, disk, port ranges).

use super::{Attribute, ProtoError, Range, Ranges, ReservationInfo, Resource, Scalar, Text};
use serde::{Deserialize, Serialize};
use std::fmt;

/// An inclusive port range.
pub type PortRange = (u64, u64);

/// Amounts of each resource kind dccore schedules. Scalars are kept at Mesos' precision (1/1000).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Resources {
    /// CPU shares.
    pub cpus: f64,
    /// Memory in MiB.
    pub mem: f64,
    /// Disk in MiB.
    pub disk: f64,
    /// Sorted, non-overlapping, non-adjacent inclusive port ranges.
    pub ports: Vec<PortRange>,
}

fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}

impl Resources {
    /// Scalar-only resources (tests and benchmarks).
    pub fn new(cpus: f64, mem: f64, disk: f64) -> Self {
        Resources {
            cpus,
            mem,
            disk,
            ports: Vec::new(),
        }
    }

    /// Parses the agent's `--resources` syntax: `cpus:4;mem:8192;disk:10000;ports:[31000-32000,33000-33010]`.
    pub fn parse(spec: &str) -> Result<Self, ProtoError> {
        let mut r = Resources::default();
        for part in spec.split(';').map(str::trim).filter(|p| !p.is_empty()) {
            let bad = |why: &str| ProtoError::BadResource {
                part: part.to_string(),
                why: why.to_string(),
            };
            let (name, value) = part
                .split_once(':')
                .ok_or_else(|| bad("expected name:value"))?;
            match name.trim() {
                "cpus" | "mem" | "disk" => {
                    let v: f64 = value.trim().parse().map_err(|_| bad("expected a number"))?;
                    if !v.is_finite() || v < 0.0 {
                        return Err(bad("expected a non-negative number"));
                    }
                    match name.trim() {
                        "cpus" => r.cpus = round(v),
                        "mem" => r.mem = round(v),
                        _ => r.disk = round(v),
                    }
                }
                "ports" => {
                    let inner = value
                        .trim()
                        .strip_prefix('[')
                        .and_then(|v| v.strip_suffix(']'))
                        .ok_or_else(|| bad("expected [BEGIN-END,...]"))?;
                    let mut ranges = Vec::new();
                    for rg in inner.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let (b, e) = rg
                            .split_once('-')
                            .ok_or_else(|| bad("expected BEGIN-END"))?;
                        let b: u64 = b.trim().parse().map_err(|_| bad("port is not a number"))?;
                        let e: u64 = e.trim().parse().map_err(|_| bad("port is not a number"))?;
                        if b > e || e > 65535 {
                            return Err(bad("expected BEGIN <= END <= 65535"));
                        }
                        ranges.push((b, e));
                    }
                    r.ports = normalize(ranges);
                }
                _ => return Err(bad("known resources are cpus, mem, disk, ports")),
            }
        }
        Ok(r)
    }

    /// Reads a Mesos resource list, summing what it knows and ignoring other names (GPUs, ...).
    pub fn from_mesos(list: &[Resource]) -> Self {
        let mut r = Resources::default();
        for res in list {
            let scalar = res.scalar.as_ref().map(|s| s.value).unwrap_or(0.0);
            let scalar = if scalar.is_finite() && scalar > 0.0 {
                scalar
            } else {
                0.0
            };
            match res.name.as_str() {
                "cpus" => r.cpus = round(r.cpus + scalar),
                "mem" => r.mem = round(r.mem + scalar),
                "disk" => r.disk = round(r.disk + scalar),
                "ports" => {
                    if let Some(rs) = &res.ranges {
                        let mut all = std::mem::take(&mut r.ports);
                        all.extend(
                            rs.range
                                .iter()
                                .filter(|x| x.begin <= x.end)
                                .map(|x| (x.begin, x.end)),
                        );
                        r.ports = normalize(all);
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// Writes a Mesos resource list. `reserved_for` marks a static reservation (public agents);
    /// `allocated_to` sets `allocation_info` as offers carry it.
    pub fn to_mesos(
        &self,
        reserved_for: Option<&str>,
        allocated_to: Option<&str>,
    ) -> Vec<Resource> {
        let role = reserved_for.unwrap_or("*").to_string();
        let reservations = match reserved_for {
            Some(r) => vec![ReservationInfo {
                kind: Some("STATIC".into()),
                role: Some(r.into()),
            }],
            None => Vec::new(),
        };
        let make = |name: &str, kind: &str| Resource {
            name: name.into(),
            kind: kind.into(),
            scalar: None,
            ranges: None,
            role: Some(role.clone()),
            reservations: reservations.clone(),
            allocation_info: allocated_to.map(|r| super::AllocationInfo { role: r.into() }),
        };
        let mut out = Vec::new();
        for (name, v) in [("cpus", self.cpus), ("mem", self.mem), ("disk", self.disk)] {
            if v > 0.0 {
                let mut r = make(name, "SCALAR");
                r.scalar = Some(Scalar { value: v });
                out.push(r);
            }
        }
        if !self.ports.is_empty() {
            let mut r = make("ports", "RANGES");
            r.ranges = Some(Ranges {
                range: self
                    .ports
                    .iter()
                    .map(|&(begin, end)| Range { begin, end })
                    .collect(),
            });
            out.push(r);
        }
        out
    }

    /// True if nothing is left worth offering (Mesos' minimum: 0.01 cpus or 32 MiB).
    pub fn is_empty(&self) -> bool {
        self.cpus < 0.01 && self.mem < 32.0
    }

    /// True if every amount of `other` is available in `self`.
    pub fn contains(&self, other: &Resources) -> bool {
        self.shortfall(other).is_none()
    }

    /// Why `other` does not fit into `self` (first missing kind), or `None` if it fits.
    pub fn shortfall(&self, other: &Resources) -> Option<String> {
        for (name, unit, have, need) in [
            ("cpus", "", self.cpus, other.cpus),
            ("mem", " MiB", self.mem, other.mem),
            ("disk", " MiB", self.disk, other.disk),
        ] {
            if need > have + 1e-9 {
                return Some(format!(
                    "insufficient {name}: need {need}{unit}, have {have}{unit}"
                ));
            }
        }
        for &(b, e) in &other.ports {
            if !self.ports.iter().any(|&(hb, he)| hb <= b && e <= he) {
                return Some(format!(
                    "insufficient ports: need [{b}-{e}], not all offered"
                ));
            }
        }
        None
    }

    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Resources) {
        self.cpus = round(self.cpus + other.cpus);
        self.mem = round(self.mem + other.mem);
        self.disk = round(self.disk + other.disk);
        if !other.ports.is_empty() {
            let mut all = std::mem::take(&mut self.ports);
            all.extend_from_slice(&other.ports);
            self.ports = normalize(all);
        }
    }

    /// Removes `other` from `self`, saturating at zero.
    pub fn subtract(&mut self, other: &Resources) {
        self.cpus = round((self.cpus - other.cpus).max(0.0));
        self.mem = round((self.mem - other.mem).max(0.0));
        self.disk = round((self.disk - other.disk).max(0.0));
        for &(b, e) in &other.ports {
            let mut next = Vec::with_capacity(self.ports.len() + 1);
            for &(hb, he) in &self.ports {
                if e < hb || b > he {
                    next.push((hb, he));
                    continue;
                }
                if hb < b {
                    next.push((hb, b - 1));
                }
                if he > e {
                    next.push((e + 1, he));
                }
            }
            self.ports = next;
        }
    }
}

impl fmt::Display for Resources {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cpus:{};mem:{};disk:{}", self.cpus, self.mem, self.disk)?;
        if !self.ports.is_empty() {
            let parts: Vec<String> = self.ports.iter().map(|(b, e)| format!("{b}-{e}")).collect();
            write!(f, ";ports:[{}]", parts.join(","))?;
        }
        Ok(())
    }
}

/// Sorts and merges overlapping or adjacent ranges.
fn normalize(mut ranges: Vec<PortRange>) -> Vec<PortRange> {
    ranges.sort_unstable();
    let mut out: Vec<PortRange> = Vec::with_capacity(ranges.len());
    for (b, e) in ranges {
        match out.last_mut() {
            Some(last) if b <= last.1.saturating_add(1) => last.1 = last.1.max(e),
            _ => out.push((b, e)),
        }
    }
    out
}

/// Parses the agent's `--attributes` syntax `rack:r1;zone:a` into Mesos TEXT attributes.
pub fn parse_attributes(spec: &str) -> Result<Vec<Attribute>, ProtoError> {
    spec.split(';')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|part| {
            let (n, v) = part
                .split_once(':')
                .ok_or_else(|| ProtoError::BadAttribute {
                    part: part.to_string(),
                })?;
            if n.trim().is_empty() {
                return Err(ProtoError::BadAttribute {
                    part: part.to_string(),
                });
            }
            Ok(Attribute {
                name: n.trim().to_string(),
                kind: "TEXT".into(),
                text: Text {
                    value: v.trim().to_string(),
                },
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_agent_resource_syntax() {
        let r = Resources::parse("cpus:4;mem:8192;disk:10000;ports:[31000-32000]").unwrap();
        assert_eq!(r.cpus, 4.0);
        assert_eq!(r.mem, 8192.0);
        assert_eq!(r.disk, 10000.0);
        assert_eq!(r.ports, vec![(31000, 32000)]);
    }

    #[test]
    fn rejects_unknown_resources_with_what_is_valid() {
        let e = Resources::parse("gpus:1").unwrap_err().to_string();
        assert!(
            e.contains("known resources are cpus, mem, disk, ports"),
            "{e}"
        );
        assert!(Resources::parse("cpus:-1").is_err());
        assert!(Resources::parse("ports:[5-1]").is_err());
    }

    #[test]
    fn subtracting_a_port_splits_the_range() {
        let mut r = Resources::parse("ports:[31000-31010]").unwrap();
        r.subtract(&Resources::parse("ports:[31005-31005]").unwrap());
        assert_eq!(r.ports, vec![(31000, 31004), (31006, 31010)]);
        r.add(&Resources::parse("ports:[31005-31005]").unwrap());
        assert_eq!(r.ports, vec![(31000, 31010)]);
    }

    #[test]
    fn shortfall_names_the_missing_resource() {
        let have = Resources::new(1.0, 128.0, 0.0);
        let need = Resources::new(0.5, 512.0, 0.0);
        assert_eq!(
            have.shortfall(&need).unwrap(),
            "insufficient mem: need 512 MiB, have 128 MiB"
        );
    }

    #[test]
    fn mesos_round_trip_keeps_amounts() {
        let r = Resources::parse("cpus:2;mem:1024;disk:1000;ports:[31000-31100]").unwrap();
        assert_eq!(
            Resources::from_mesos(&r.to_mesos(Some("slave_public"), Some("r"))),
            r
        );
    }

    #[test]
    fn parses_attributes() {
        let a = parse_attributes("rack:r1;zone:a").unwrap();
        assert_eq!(a.len(), 2);
        assert_eq!(a[1].text.value, "a");
        assert!(parse_attributes("nocolon").is_err());
    }
}
