//! Validation of what a framework asks to launch, as Mesos does it (`common/validation.cpp`,
//! `master/validation.cpp`): task ids and the resources a task uses. A task that fails is refused
//! with `TASK_ERROR` and the error's text as the message, never launched.

use super::{Resource, Resources};

/// Longest task id, in bytes (Mesos: `NAME_MAX`, because ids name sandbox directories).
pub const MAX_TASK_ID_BYTES: usize = 255;

/// Resource names a task may use (what agents offer).
pub const KNOWN_RESOURCES: &str = "cpus, mem, disk, ports";

/// Why a task id is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TaskIdError {
    /// `""`.
    #[error("task id must not be empty")]
    Empty,
    /// Longer than [`MAX_TASK_ID_BYTES`].
    #[error("task id is {len} bytes long; at most {MAX_TASK_ID_BYTES} are allowed")]
    TooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// `.` or `..` (they name directories).
    #[error("task id {0:?} is not allowed")]
    DotName(String),
    /// A path separator or a control character.
    #[error(
        "task id {id:?} contains the invalid character {c:?} (no '/', '\\\\' or control characters)"
    )]
    InvalidChar {
        /// The id.
        id: String,
        /// The first offending character.
        c: char,
    },
    /// Spaces, tabs, newlines, ...
    #[error("task id {0:?} contains white space")]
    WhiteSpace(String),
}

/// Checks a task id against Mesos' rules.
pub fn task_id(id: &str) -> Result<(), TaskIdError> {
    if id.is_empty() {
        return Err(TaskIdError::Empty);
    }
    if id.len() > MAX_TASK_ID_BYTES {
        return Err(TaskIdError::TooLong { len: id.len() });
    }
    if id == "." || id == ".." {
        return Err(TaskIdError::DotName(id.to_string()));
    }
    if let Some(c) = id
        .chars()
        .find(|c| c.is_control() || *c == '/' || *c == '\\')
    {
        return Err(TaskIdError::InvalidChar { id: shorten(id), c });
    }
    if id.chars().any(char::is_whitespace) {
        return Err(TaskIdError::WhiteSpace(shorten(id)));
    }
    Ok(())
}

/// Why a task's resources cannot be honoured.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ResourceError {
    /// No resources at all: the task would run unaccounted and unlimited.
    #[error("task uses no resources: give at least cpus or mem")]
    NoResources,
    /// A name agents do not offer.
    #[error("unknown resource {name:?}: known resources are {KNOWN_RESOURCES}")]
    Unknown {
        /// The name.
        name: String,
    },
    /// `ports` as a scalar, `cpus` as ranges, ...
    #[error("resource {name:?} must be of type {want}, not {got}")]
    WrongType {
        /// The name.
        name: String,
        /// The type it must have.
        want: &'static str,
        /// The type it was given.
        got: String,
    },
    /// The type's value field is missing (`SCALAR` without `scalar`, ...).
    #[error("resource {name:?} of type {kind} has no {field} value")]
    MissingValue {
        /// The name.
        name: String,
        /// Its type.
        kind: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// Negative, zero, NaN or infinite.
    #[error("resource {name:?} must be a positive finite amount, not {value}")]
    BadScalar {
        /// The name.
        name: String,
        /// The amount given.
        value: f64,
    },
    /// A range with begin > end or beyond port 65535.
    #[error("resource {name:?} has the invalid range [{begin}-{end}] (want BEGIN <= END <= 65535)")]
    BadRange {
        /// The name.
        name: String,
        /// First value.
        begin: u64,
        /// Last value.
        end: u64,
    },
}

/// Parses a task's resource list strictly: every entry must be one agents offer, of its type,
/// with a positive finite amount (or valid port ranges). Mesos refuses the same tasks.
pub fn task_resources(list: &[Resource]) -> Result<Resources, ResourceError> {
    if list.is_empty() {
        return Err(ResourceError::NoResources);
    }
    for r in list {
        let want = match r.name.as_str() {
            "cpus" | "mem" | "disk" => "SCALAR",
            "ports" => "RANGES",
            _ => {
                return Err(ResourceError::Unknown {
                    name: shorten(&r.name),
                });
            }
        };
        if r.kind != want {
            return Err(ResourceError::WrongType {
                name: r.name.clone(),
                want,
                got: shorten(&r.kind),
            });
        }
        if want == "SCALAR" {
            let value = r
                .scalar
                .as_ref()
                .ok_or_else(|| ResourceError::MissingValue {
                    name: r.name.clone(),
                    kind: "SCALAR",
                    field: "scalar",
                })?
                .value;
            // Mesos keeps three decimals: anything below 0.001 is zero.
            if !value.is_finite() || value < 0.0005 {
                return Err(ResourceError::BadScalar {
                    name: r.name.clone(),
                    value,
                });
            }
        } else {
            let ranges = r
                .ranges
                .as_ref()
                .ok_or_else(|| ResourceError::MissingValue {
                    name: r.name.clone(),
                    kind: "RANGES",
                    field: "ranges",
                })?;
            if let Some(bad) = ranges
                .range
                .iter()
                .find(|x| x.begin > x.end || x.end > 65535)
            {
                return Err(ResourceError::BadRange {
                    name: r.name.clone(),
                    begin: bad.begin,
                    end: bad.end,
                });
            }
        }
    }
    Ok(Resources::from_mesos(list))
}

/// Bounds client text echoed in a message (a 5 MB id must not come back whole).
fn shorten(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_string();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::{Range, Ranges, Scalar};

    #[test]
    fn task_ids_are_refused_as_mesos_refuses_them() {
        assert_eq!(task_id(""), Err(TaskIdError::Empty));
        assert_eq!(task_id("."), Err(TaskIdError::DotName(".".into())));
        assert_eq!(task_id(".."), Err(TaskIdError::DotName("..".into())));
        assert!(matches!(
            task_id("a/b"),
            Err(TaskIdError::InvalidChar { c: '/', .. })
        ));
        assert!(matches!(
            task_id("a\\b"),
            Err(TaskIdError::InvalidChar { .. })
        ));
        assert!(matches!(
            task_id("a\u{1}b"),
            Err(TaskIdError::InvalidChar { .. })
        ));
        assert_eq!(task_id("a b"), Err(TaskIdError::WhiteSpace("a b".into())));
        assert!(matches!(
            task_id("a\u{a0}b"),
            Err(TaskIdError::WhiteSpace(_))
        ));
        assert_eq!(task_id(&"x".repeat(255)), Ok(()));
        assert_eq!(
            task_id(&"x".repeat(256)),
            Err(TaskIdError::TooLong { len: 256 })
        );
        for ok in ["web.1", "a_b", "a-b", "...", "ünïcode", "a.b.c:42"] {
            assert_eq!(task_id(ok), Ok(()), "{ok}");
        }
    }

    fn scalar(name: &str, v: f64) -> Resource {
        Resource {
            name: name.into(),
            kind: "SCALAR".into(),
            scalar: Some(Scalar { value: v }),
            ranges: None,
            role: None,
            reservations: vec![],
            allocation_info: None,
        }
    }

    #[test]
    fn resources_that_cannot_be_honoured_are_refused_with_what_is_wrong() {
        for v in [-1.0, 0.0, 0.0001, f64::NAN, f64::INFINITY] {
            let e = task_resources(&[scalar("cpus", v)]).unwrap_err();
            assert!(matches!(e, ResourceError::BadScalar { .. }), "{v}: {e}");
            assert!(e.to_string().contains("positive finite"), "{e}");
        }
        assert_eq!(task_resources(&[]), Err(ResourceError::NoResources));
        let e = task_resources(&[scalar("gpus", 1.0)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown resource \"gpus\": known resources are cpus, mem, disk, ports"
        );
        let e = task_resources(&[scalar("ports", 1.0)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "resource \"ports\" must be of type RANGES, not SCALAR"
        );
        let mut r = scalar("mem", 1.0);
        r.scalar = None;
        assert!(matches!(
            task_resources(&[r]),
            Err(ResourceError::MissingValue { .. })
        ));
        let mut p = scalar("ports", 0.0);
        p.kind = "RANGES".into();
        p.scalar = None;
        p.ranges = Some(Ranges {
            range: vec![Range { begin: 9, end: 1 }],
        });
        assert!(matches!(
            task_resources(&[p.clone()]),
            Err(ResourceError::BadRange { .. })
        ));
        p.ranges = Some(Ranges {
            range: vec![Range {
                begin: 31000,
                end: 31001,
            }],
        });
        let ok = task_resources(&[scalar("cpus", 0.5), scalar("mem", 32.0), p]).unwrap();
        assert_eq!(ok.cpus, 0.5);
        assert_eq!(ok.ports, vec![(31000, 31001)]);
    }
}
