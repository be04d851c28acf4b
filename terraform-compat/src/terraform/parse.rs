//! Terraform files -> a small tree of blocks and attributes with line numbers. hcl-edit keeps byte spans;
//! values are converted to hcl-rs expressions, which the resolver works on.

use std::path::{Path, PathBuf};

use hcl::Expression;
use hcl::edit::Span;
use hcl::edit::structure::{Block, BlockLabel, Body, Structure};

use crate::error::CompatError;

/// Deepest bracket nesting handed to the parser, which recurses per level: a file of a million `[`
/// would otherwise overflow the stack. Real configurations nest a handful of levels.
pub(crate) const MAX_NESTING: usize = 100;

/// `key = value` and the line it starts on.
#[derive(Debug, Clone)]
pub(crate) struct Attr {
    pub key: String,
    pub value: Expression,
    pub line: usize,
}

/// `ident "label" { ... }` and the line it starts on.
#[derive(Debug, Clone)]
pub(crate) struct Blk {
    pub ident: String,
    pub labels: Vec<String>,
    pub line: usize,
    pub attrs: Vec<Attr>,
    pub blocks: Vec<Blk>,
}

impl Blk {
    pub fn attr(&self, key: &str) -> Option<&Attr> {
        self.attrs.iter().find(|a| a.key == key)
    }

    pub fn label(&self, i: usize) -> &str {
        self.labels.get(i).map_or("", String::as_str)
    }
}

/// One parsed file.
#[derive(Debug, Clone)]
pub(crate) struct TfFile {
    pub path: PathBuf,
    pub attrs: Vec<Attr>,
    pub blocks: Vec<Blk>,
}

struct Lines(Vec<usize>);

impl Lines {
    fn new(text: &str) -> Lines {
        let mut v = vec![0];
        v.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        Lines(v)
    }

    fn line(&self, offset: usize) -> usize {
        match self.0.binary_search(&offset) {
            Ok(i) => i + 1,
            Err(i) => i,
        }
    }
}

/// Parses one Terraform file (0.11 or 0.12+ syntax).
pub(crate) fn parse(path: &Path, text: &str) -> Result<TfFile, CompatError> {
    if let Some((line, col)) = too_deep(text) {
        return Err(CompatError::Syntax {
            file: path.to_path_buf(),
            line,
            col,
            message: format!("brackets nested deeper than {MAX_NESTING} levels"),
            hint: "a Terraform configuration nests a few levels; flatten the expression".into(),
        });
    }
    let body: Body = hcl::edit::parser::parse_body(text).map_err(|e| {
        let loc = e.location();
        CompatError::Syntax {
            file: path.to_path_buf(),
            line: loc.line(),
            col: loc.column(),
            message: format!(
                "not valid HCL: {}",
                e.message().split_whitespace().collect::<Vec<_>>().join(" ")
            ),
            hint: "a Terraform file holds blocks like `module \"dcos\" {` ... `}` and attributes like `key = value`".into(),
        }
    })?;
    let lines = Lines::new(text);
    let (attrs, blocks) = convert_body(&body, &lines);
    Ok(TfFile {
        path: path.to_path_buf(),
        attrs,
        blocks,
    })
}

fn convert_body(body: &Body, lines: &Lines) -> (Vec<Attr>, Vec<Blk>) {
    let mut attrs = Vec::new();
    let mut blocks = Vec::new();
    for s in body.iter() {
        match s {
            Structure::Attribute(a) => attrs.push(Attr {
                key: a.key.as_str().to_string(),
                value: Expression::from(a.value.clone()),
                line: lines.line(a.span().map_or(0, |r| r.start)),
            }),
            Structure::Block(b) => blocks.push(convert_block(b, lines)),
        }
    }
    (attrs, blocks)
}

fn convert_block(b: &Block, lines: &Lines) -> Blk {
    let (attrs, blocks) = convert_body(&b.body, lines);
    Blk {
        ident: b.ident.as_str().to_string(),
        labels: b
            .labels
            .iter()
            .map(|l| match l {
                BlockLabel::String(s) => s.as_str().to_string(),
                BlockLabel::Ident(i) => i.as_str().to_string(),
            })
            .collect(),
        line: lines.line(b.span().map_or(0, |r| r.start)),
        attrs,
        blocks,
    }
}

/// Line and column where bracket nesting first exceeds [`MAX_NESTING`] (counting brackets everywhere,
/// strings included: a coarse guard that only trips on absurd input).
pub(crate) fn too_deep(text: &str) -> Option<(usize, usize)> {
    let mut depth = 0usize;
    let (mut line, mut col) = (1usize, 0usize);
    for c in text.chars() {
        col += 1;
        match c {
            '\n' => {
                line += 1;
                col = 0;
            }
            '[' | '{' | '(' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some((line, col));
                }
            }
            ']' | '}' | ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}
