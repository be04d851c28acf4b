//! Raw HCL: source files parsed with `hcl-edit` (which keeps byte spans) into a small tree of blocks and
//! attributes. Nothing is evaluated or checked here beyond syntax; the tree keeps every span so that later
//! stages (variables, evaluation, validation) can report `file:line:col`.

use std::ops::Range;
use std::path::{Path, PathBuf};

use hcl::edit::Span;
use hcl::edit::expr::Expression;
use hcl::edit::structure::{Body, Structure};

use super::error::Diagnostic;

/// Deepest bracket nesting we hand to the parser and evaluator. Both recurse per level, so a hostile
/// file of a million `[` would overflow the stack; real definitions nest a handful of levels.
const MAX_NESTING: usize = 128;

/// Index of a file in [`Sources`].
pub(crate) type FileId = usize;

/// A place in a source file: which file and a byte range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Loc {
    pub file: FileId,
    pub span: Range<usize>,
}

/// One source text and the offsets of its line starts, to turn byte offsets into line/column.
#[derive(Debug)]
pub(crate) struct Source {
    pub path: PathBuf,
    pub text: String,
    line_starts: Vec<usize>,
}

/// All files read for one load; diagnostics refer to them by [`FileId`].
#[derive(Debug, Default)]
pub(crate) struct Sources {
    files: Vec<Source>,
}

impl Sources {
    /// Adds a file's text and returns its id.
    pub fn add(&mut self, path: PathBuf, text: String) -> FileId {
        let mut line_starts = vec![0];
        line_starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        self.files.push(Source {
            path,
            text,
            line_starts,
        });
        self.files.len() - 1
    }

    /// The file with this id.
    pub fn get(&self, id: FileId) -> Option<&Source> {
        self.files.get(id)
    }

    /// 1-based line and character column of a byte offset.
    pub fn line_col(&self, file: FileId, offset: usize) -> (usize, usize) {
        let Some(src) = self.files.get(file) else {
            return (0, 0);
        };
        let offset = offset.min(src.text.len());
        let line_idx = match src.line_starts.binary_search(&offset) {
            Ok(i) => i,
            Err(i) => i.saturating_sub(1),
        };
        let start = src.line_starts.get(line_idx).copied().unwrap_or(0);
        // Columns count characters, not bytes, so that a caret under a non-ASCII line lines up.
        let col = match src.text.get(start..offset) {
            Some(s) => s.chars().count() + 1,
            None => offset - start + 1,
        };
        (line_idx + 1, col)
    }

    /// A diagnostic at `loc`.
    pub fn diag(
        &self,
        loc: &Loc,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Diagnostic {
        let (line, col) = self.line_col(loc.file, loc.span.start);
        let file = self
            .files
            .get(loc.file)
            .map(|s| s.path.clone())
            .unwrap_or_default();
        Diagnostic {
            file,
            line,
            col,
            message: message.into(),
            hint: hint.into(),
        }
    }

    /// The source text of a span (for messages that quote the user's expression).
    pub fn snippet(&self, loc: &Loc) -> &str {
        self.files
            .get(loc.file)
            .and_then(|s| s.text.get(loc.span.clone()))
            .unwrap_or("")
    }
}

/// An attribute `key = value` with the spans of its key and value.
#[derive(Debug, Clone)]
pub(crate) struct RawAttr {
    pub key: String,
    pub key_loc: Loc,
    pub value: Expression,
    pub value_loc: Loc,
}

/// A block label and where it is.
#[derive(Debug, Clone)]
pub(crate) struct RawLabel {
    pub name: String,
    pub loc: Loc,
}

/// A block `ident "label" ... { body }` with spans.
#[derive(Debug, Clone)]
pub(crate) struct RawBlock {
    pub ident: String,
    pub ident_loc: Loc,
    pub labels: Vec<RawLabel>,
    pub body: RawBody,
}

/// A body: attributes and blocks, each in file order.
#[derive(Debug, Clone, Default)]
pub(crate) struct RawBody {
    pub attrs: Vec<RawAttr>,
    pub blocks: Vec<RawBlock>,
}

impl RawBody {
    /// The first attribute with this key.
    pub fn attr(&self, key: &str) -> Option<&RawAttr> {
        self.attrs.iter().find(|a| a.key == key)
    }
}

/// Parses one file into a [`RawBody`]. Syntax errors carry the parser's own position.
pub(crate) fn parse_file(sources: &Sources, file: FileId) -> Result<RawBody, Diagnostic> {
    let Some(src) = sources.get(file) else {
        return Err(Diagnostic::unplaced(
            "<internal>",
            "invariant: unknown source file id",
            "",
        ));
    };
    if let Some(offset) = too_deep(&src.text) {
        return Err(sources.diag(
            &Loc {
                file,
                span: offset..offset,
            },
            format!("brackets nested deeper than {MAX_NESTING} levels"),
            "flatten the expression",
        ));
    }
    let body: Body = hcl::edit::parser::parse_body(&src.text).map_err(|e| {
        let loc = e.location();
        if e.message().contains("redefined attribute") {
            return Diagnostic {
                file: src.path.clone(),
                line: loc.line(),
                col: loc.column(),
                message: "attribute is set twice in the same block".into(),
                hint: "keep one of them".into(),
            };
        }
        Diagnostic {
            file: src.path.clone(),
            line: loc.line(),
            col: loc.column(),
            message: format!("syntax error: {}", one_line(e.message())),
            hint: "HCL blocks look like `name \"label\" {` ... `}` over several lines, attributes like `key = value`"
                .into(),
        }
    })?;
    Ok(convert_body(file, &body))
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Byte offset where bracket nesting first exceeds [`MAX_NESTING`], counting brackets everywhere
/// (including strings): a coarse guard that only trips on absurd input.
fn too_deep(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    for (i, b) in text.bytes().enumerate() {
        match b {
            b'(' | b'[' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some(i);
                }
            }
            b')' | b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}

fn loc_of(file: FileId, s: &impl Span) -> Loc {
    Loc {
        file,
        span: s.span().unwrap_or(0..0),
    }
}

fn convert_body(file: FileId, body: &Body) -> RawBody {
    let mut out = RawBody::default();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => out.attrs.push(RawAttr {
                key: a.key.as_str().to_string(),
                key_loc: loc_of(file, &a.key),
                value: a.value.clone(),
                value_loc: loc_of(file, &a.value),
            }),
            Structure::Block(b) => out.blocks.push(RawBlock {
                ident: b.ident.as_str().to_string(),
                ident_loc: loc_of(file, &b.ident),
                labels: b
                    .labels
                    .iter()
                    .map(|l| RawLabel {
                        name: l.as_str().to_string(),
                        loc: loc_of(file, l),
                    })
                    .collect(),
                body: convert_body(file, &b.body),
            }),
        }
    }
    out
}

/// The definition files and variable-value files a path stands for.
#[derive(Debug, Default)]
pub(crate) struct FileSet {
    /// Definition files (`*.hcl` except `*.auto.hcl`), sorted.
    pub definitions: Vec<PathBuf>,
    /// Variable-value files (`*.auto.hcl`), sorted.
    pub auto_files: Vec<PathBuf>,
    /// The folder relative paths in the definition resolve against.
    pub dir: PathBuf,
}

/// Lists the files of a definition: `path` is one `.hcl` file, or a folder whose `*.hcl` files (not
/// recursive) are the definition and whose `*.auto.hcl` files hold variable values.
pub(crate) fn list_files(path: &Path) -> std::io::Result<FileSet> {
    let meta = std::fs::metadata(path)?;
    if !meta.is_dir() {
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        return Ok(FileSet {
            definitions: vec![path.to_path_buf()],
            auto_files: vec![],
            dir,
        });
    }
    let mut set = FileSet {
        dir: path.to_path_buf(),
        ..FileSet::default()
    };
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let p = entry.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if !name.ends_with(".hcl") || name.starts_with('.') || !p.is_file() {
            continue;
        }
        if name.ends_with(".auto.hcl") {
            set.auto_files.push(p);
        } else {
            set.definitions.push(p);
        }
    }
    set.definitions.sort();
    set.auto_files.sort();
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_col_counts_from_one_and_in_characters() {
        let mut s = Sources::default();
        let id = s.add("a.hcl".into(), "ab\n\u{e9}x = 1\n".into());
        assert_eq!(s.line_col(id, 0), (1, 1));
        assert_eq!(s.line_col(id, 3), (2, 1));
        // `x` follows a two-byte character: byte 5, character column 2.
        assert_eq!(s.line_col(id, 5), (2, 2));
        assert_eq!(s.line_col(id, 999), (3, 1));
    }

    #[test]
    fn parse_errors_carry_the_parser_position() {
        let mut s = Sources::default();
        let id = s.add("bad.hcl".into(), "cluster \"x\" {\n  a = \n}\n".into());
        let err = parse_file(&s, id).expect_err("syntax error");
        assert_eq!(err.line, 2);
        assert!(err.message.starts_with("syntax error"), "{err}");
    }

    #[test]
    fn absurd_nesting_is_rejected_before_parsing() {
        let mut s = Sources::default();
        let id = s.add("deep.hcl".into(), format!("x = {}", "[".repeat(10_000)));
        let err = parse_file(&s, id).expect_err("too deep");
        assert!(err.message.contains("nested deeper"), "{err}");
    }
}
