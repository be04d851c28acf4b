//! Diagnostics and the loader's error type.
//!
//! Every problem found in a definition becomes a [`Diagnostic`] that names `file:line:col`, says what is
//! wrong, and (in `hint`) what would have been valid. The loader collects as many as it can before giving
//! up, so a user fixes several mistakes per run instead of one.

use std::fmt;

use super::input::{MAX_ECHO_CHARS, echo};
use std::path::PathBuf;

/// One finding about a definition: an error (in [`SpecError::Invalid`]) or a warning (in `Loaded::warnings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file the finding is about, as the loader was given it (joined with the folder), or a pseudo
    /// name such as `<command line>` or `<env DCFORM_VAR_x>` for values that come from outside files.
    pub file: PathBuf,
    /// 1-based line; 0 when the finding has no position (command-line values, a missing folder).
    pub line: usize,
    /// 1-based column in characters; 0 when the finding has no position.
    pub col: usize,
    /// What is wrong, in one sentence.
    pub message: String,
    /// What would have been valid (valid names, a "did you mean", how to set a variable); may be empty.
    pub hint: String,
}

impl Diagnostic {
    /// A diagnostic without a position in a file (command-line values, environment, folders).
    pub fn unplaced(
        file: impl Into<PathBuf>,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Diagnostic {
            file: file.into(),
            line: 0,
            col: 0,
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for Diagnostic {
    /// `FILE:LINE:COL: message` and, on the next line, the hint. User text quoted in them is cut to
    /// a readable length (a 5 MB value is not echoed whole).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let file = tame(&self.file.display().to_string());
        let message = tame(&self.message);
        if self.line > 0 {
            write!(f, "{file}:{}:{}: {message}", self.line, self.col)?;
        } else {
            write!(f, "{file}: {message}")?;
        }
        if !self.hint.is_empty() {
            write!(f, "\n  hint: {}", tame(&self.hint))?;
        }
        Ok(())
    }
}

/// Cuts every `"quoted"` piece of `text` to [`echo`]'s length, and the whole to a few times that:
/// messages quote what the user wrote, which can be megabytes.
fn tame(text: &str) -> String {
    let quoted: Vec<String> = text
        .split('"')
        .enumerate()
        .map(|(i, piece)| {
            if i % 2 == 1 {
                echo(piece)
            } else {
                piece.to_string()
            }
        })
        .collect();
    let joined = quoted.join("\"");
    if joined.chars().count() > 8 * MAX_ECHO_CHARS {
        let cut = joined
            .char_indices()
            .nth(8 * MAX_ECHO_CHARS)
            .map_or(joined.len(), |(i, _)| i);
        format!(
            "{}… ({} more bytes not shown)",
            &joined[..cut],
            joined.len() - cut
        )
    } else {
        joined
    }
}

/// Why a definition could not be loaded.
///
/// Both variants are user errors (bad input): the CLI maps them to exit code 1.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// The definition was read but is not valid; `diagnostics` holds every error found (at least one).
    #[error("{}", render(.diagnostics, .warnings))]
    Invalid {
        /// The errors, in file order where possible.
        diagnostics: Vec<Diagnostic>,
        /// Warnings found on the way (e.g. an even number of masters), for the CLI to print as well.
        warnings: Vec<Diagnostic>,
    },
    /// A file or folder named by the user could not be read.
    #[error("cannot read {}", .path.display())]
    Read {
        /// The path that could not be read.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl SpecError {
    /// The errors as diagnostics (a read failure becomes one unplaced diagnostic).
    pub fn diagnostics(&self) -> Vec<Diagnostic> {
        match self {
            SpecError::Invalid { diagnostics, .. } => diagnostics.clone(),
            SpecError::Read { path, source } => {
                vec![Diagnostic::unplaced(
                    path.clone(),
                    format!("cannot read: {source}"),
                    "",
                )]
            }
        }
    }
}

/// All errors, then the warnings (marked as such, the way the CLI prints them on success).
fn render(errors: &[Diagnostic], warnings: &[Diagnostic]) -> String {
    let mut lines: Vec<String> = errors.iter().map(Diagnostic::to_string).collect();
    lines.extend(warnings.iter().map(|w| format!("Warning: {w}")));
    lines.join("\n")
}

/// Levenshtein distance, for "did you mean" hints.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    let mut cur = vec![0; b.len() + 1];
    for (i, ca) in a.chars().enumerate() {
        cur[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The closest candidate to `word`, if it is close enough to be a likely typo.
pub(crate) fn closest<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let lower = word.to_lowercase();
    // Allow one edit for short words and a third of the length for longer ones: `cuont` -> `count` (2,
    // a transposition) must match, `foo` -> `role` must not.
    let limit = (word.chars().count() / 3)
        .max(1)
        .max(if word.len() >= 4 { 2 } else { 1 });
    candidates
        .into_iter()
        .map(|c| (edit_distance(&lower, &c.to_lowercase()), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// `did you mean "x"? valid …: a, b, c` — the standard hint for an unknown name.
pub(crate) fn name_hint(word: &str, what: &str, valid: &[&str]) -> String {
    let list = if valid.is_empty() {
        "none".to_string()
    } else {
        valid.join(", ")
    };
    match closest(word, valid.iter().copied()) {
        Some(c) => format!("did you mean \"{c}\"? valid {what}: {list}"),
        None => format!("valid {what}: {list}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_single_edits() {
        assert_eq!(edit_distance("count", "count"), 0);
        assert_eq!(edit_distance("cuont", "count"), 2);
        assert_eq!(edit_distance("rol", "role"), 1);
        assert_eq!(edit_distance("", "abc"), 3);
    }

    #[test]
    fn closest_finds_transpositions_but_not_unrelated_words() {
        assert_eq!(closest("cuont", ["role", "count", "hosts"]), Some("count"));
        assert_eq!(closest("xyz", ["role", "count", "hosts"]), None);
        assert_eq!(closest("Master", ["master", "agent"]), Some("master"));
    }

    #[test]
    fn spec_error_display_lists_every_error_then_the_warnings() {
        let d = |line, m: &str| Diagnostic {
            file: "a.hcl".into(),
            line,
            col: 1,
            message: m.into(),
            hint: String::new(),
        };
        let e = SpecError::Invalid {
            diagnostics: vec![d(1, "first"), d(2, "second")],
            warnings: vec![d(3, "even")],
        };
        assert_eq!(
            e.to_string(),
            "a.hcl:1:1: first\na.hcl:2:1: second\nWarning: a.hcl:3:1: even"
        );
    }

    #[test]
    fn diagnostic_display_has_position_and_hint() {
        let d = Diagnostic {
            file: "bad.hcl".into(),
            line: 9,
            col: 5,
            message: "unknown attribute \"cuont\"".into(),
            hint: "did you mean \"count\"?".into(),
        };
        assert_eq!(
            d.to_string(),
            "bad.hcl:9:5: unknown attribute \"cuont\"\n  hint: did you mean \"count\"?"
        );
    }
}

/// Errors and warnings collected during one load.
#[derive(Debug, Default)]
pub(crate) struct Diags {
    pub errors: Vec<Diagnostic>,
    pub warnings: Vec<Diagnostic>,
}

impl Diags {
    /// Records an error.
    pub fn error(&mut self, d: Diagnostic) {
        self.errors.push(d);
    }

    /// Records several errors.
    pub fn errors(&mut self, ds: impl IntoIterator<Item = Diagnostic>) {
        self.errors.extend(ds);
    }

    /// Records a warning.
    pub fn warn(&mut self, d: Diagnostic) {
        self.warnings.push(d);
    }
}
