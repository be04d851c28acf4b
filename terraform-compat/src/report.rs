//! What a conversion did not carry over, and what it changed on the way: printed for people (stderr) and
//! as JSON (`--json`).

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Serialize;

/// The kind of file a conversion read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    /// A Terraform configuration using the dcos-terraform modules (`main.tf`).
    Terraform,
    /// A DC/OS installer configuration (`genconf/config.yaml`).
    Installer,
    /// A Terraform state (`terraform.tfstate`, format version 4).
    TfState,
}

impl SourceKind {
    /// A few words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            SourceKind::Terraform => "Terraform configuration",
            SourceKind::Installer => "DC/OS installer config",
            SourceKind::TfState => "Terraform state",
        }
    }
}

/// One input, and where it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// The input's name as the user wrote it: `module.dcos.dcos_license_key_contents`, `oauth_enabled`,
    /// `aws_instance.bootstrap[0]`.
    pub input: String,
    /// The file it is in.
    pub file: PathBuf,
    /// 1-based line; 0 when unknown (JSON and YAML values without a position).
    pub line: usize,
    /// Why it was not carried over, or what was done with it.
    pub reason: String,
}

/// A pool of the converted definition, for the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PoolSummary {
    /// Pool name.
    pub name: String,
    /// `master`, `agent` or `public_agent`.
    pub role: String,
    /// Node count, when known without variables (`None` for `count = var.x` without a default).
    pub nodes: Option<u64>,
}

/// What a conversion did: the summary, every input not carried over, and the changes made on the way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The file(s) read.
    pub sources: Vec<PathBuf>,
    /// Their kind.
    pub kind: SourceKind,
    /// The cluster name written.
    pub cluster: String,
    /// The provider written (`aws`, `ssh`).
    pub provider: String,
    /// The pools written.
    pub pools: Vec<PoolSummary>,
    /// Inputs that have no place in the dcform definition, each with its reason.
    pub not_carried_over: Vec<Item>,
    /// Inputs carried over with a change (a default filled in, a path rewritten, a name made valid).
    pub notes: Vec<Item>,
}

impl Report {
    pub(crate) fn new(sources: Vec<PathBuf>, kind: SourceKind) -> Report {
        Report {
            sources,
            kind,
            cluster: String::new(),
            provider: String::new(),
            pools: Vec::new(),
            not_carried_over: Vec::new(),
            notes: Vec::new(),
        }
    }

    pub(crate) fn drop_input(
        &mut self,
        input: impl Into<String>,
        file: &std::path::Path,
        line: usize,
        reason: impl Into<String>,
    ) {
        self.not_carried_over.push(Item {
            input: input.into(),
            file: file.to_path_buf(),
            line,
            reason: reason.into(),
        });
    }

    pub(crate) fn note(
        &mut self,
        input: impl Into<String>,
        file: &std::path::Path,
        line: usize,
        reason: impl Into<String>,
    ) {
        self.notes.push(Item {
            input: input.into(),
            file: file.to_path_buf(),
            line,
            reason: reason.into(),
        });
    }

    /// Puts the items in reading order (file, line); items without a line come first, as the
    /// conversion found them.
    pub(crate) fn sort(&mut self) {
        self.not_carried_over
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
        self.notes
            .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    }

    /// Total nodes of the pools whose size is known.
    pub fn known_nodes(&self) -> u64 {
        self.pools.iter().filter_map(|p| p.nodes).sum()
    }

    /// The report for people: one summary line, then every input not carried over and every note,
    /// each as `file:line: input: reason`.
    pub fn render_human(&self) -> String {
        let mut s = String::new();
        let files: Vec<String> = self
            .sources
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let pools: Vec<String> = self
            .pools
            .iter()
            .map(|p| match p.nodes {
                Some(n) => format!("{} ({} x {})", p.name, n, p.role),
                None => format!("{} ({})", p.name, p.role),
            })
            .collect();
        let _ = writeln!(
            s,
            "Converted {} ({}) to cluster \"{}\", provider \"{}\", pools: {}.",
            files.join(", "),
            self.kind.describe(),
            self.cluster,
            self.provider,
            pools.join(", ")
        );
        if self.not_carried_over.is_empty() {
            let _ = writeln!(s, "Every input was carried over.");
        } else {
            let _ = writeln!(s, "Not carried over ({}):", self.not_carried_over.len());
            for i in &self.not_carried_over {
                let _ = writeln!(s, "  {}", item_line(i));
            }
        }
        if !self.notes.is_empty() {
            let _ = writeln!(s, "Carried over with a change ({}):", self.notes.len());
            for i in &self.notes {
                let _ = writeln!(s, "  {}", item_line(i));
            }
        }
        s
    }
}

fn item_line(i: &Item) -> String {
    let place = match i.line {
        0 => i.file.display().to_string(),
        l => format!("{}:{l}", i.file.display()),
    };
    format!("{place}: {}: {}", i.input, i.reason)
}
