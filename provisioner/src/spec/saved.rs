//! What a saved plan (`dcform plan -out FILE`) keeps of its definition: every file the load read
//! (definition files, `*.auto.hcl`, `-var-file`s, `file()` arguments) with its text, the `-var`
//! values, a sha256 over all of it, and a sha256 of the validated [`ClusterSpec`].
//!
//! A saved plan never carries a definition that is trusted as it is: `apply PLANFILE` loads and
//! validates the definition again with the plan's variables ([`SavedDefinition::check`]), and refuses
//! the plan when the plan file's copy does not match its hash, when a file the definition reads is
//! not what it was, or when what it evaluates to changed (an environment variable, `env()`).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ClusterSpec;

/// One file a load read, as it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedFile {
    /// The path as the load named it.
    pub path: PathBuf,
    /// Its text (definitions and value files are UTF-8; other bytes are kept lossily, and only
    /// compared through the hash of the original bytes).
    pub text: String,
    /// sha256 of the bytes read, hex.
    pub sha256: String,
}

/// The definition of a saved plan: how to load it again and what it was.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedDefinition {
    /// The definition path given to `plan` (a `.hcl` file, a folder, or a converted `main.tf`).
    pub path: PathBuf,
    /// The folder `plan` ran in: the relative paths here (`path`, `var_files`, `files`) are
    /// relative to it, so the plan is applied from there.
    pub dir: PathBuf,
    /// `-var NAME=VALUE` pairs, in command-line order.
    pub vars: Vec<(String, String)>,
    /// `-var-file` paths, in command-line order.
    pub var_files: Vec<PathBuf>,
    /// Every file the load read, in order.
    pub files: Vec<SavedFile>,
    /// sha256 over `path`, `vars`, `var_files` and `files`.
    pub sha256: String,
    /// sha256 of the validated definition (its JSON form).
    pub spec_sha256: String,
}

/// Why a saved plan's definition is not the one it was made from. All are the user's to resolve
/// (make a new plan), none is retried.
#[derive(Debug, thiserror::Error)]
pub enum SavedPlanError {
    /// The plan file (its changes, or its copy of the definition) does not match the hash it carries.
    #[error(
        "the plan file does not match its sha256: it was edited or damaged after `dcform plan -out` wrote it; run `dcform plan` again (`-out FILE` saves the new plan)"
    )]
    Tampered,
    /// A file the definition reads changed (or is gone, or is new) since the plan was made.
    #[error("the definition changed since the plan was made ({}); run `dcform plan` again (`-out FILE` saves the new plan)", .changed.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    SourceChanged {
        /// The files that differ.
        changed: Vec<PathBuf>,
    },
    /// Same files, but the definition evaluates to something else (a `DCFORM_VAR_*` or `env()` value).
    #[error(
        "the definition evaluates differently than when the plan was made (a DCFORM_VAR_* or env() value changed); run `dcform plan` again (`-out FILE` saves the new plan)"
    )]
    SpecChanged,
}

/// sha256 of `bytes`, hex: every hash a plan file carries.
pub fn hex_sha(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// sha256 of the validated definition: what an apply would carry out.
pub fn spec_sha256(spec: &ClusterSpec) -> String {
    // Serialising plain data (strings, numbers, maps with string keys) cannot fail.
    hex_sha(&serde_json::to_vec(spec).unwrap_or_default())
}

impl SavedDefinition {
    /// Keeps what a load of `path` with these variables read (see [`super::input::recorded`]) and
    /// the spec it validated into.
    pub fn new(
        path: &Path,
        dir: PathBuf,
        vars: Vec<(String, String)>,
        var_files: Vec<PathBuf>,
        reads: &[(PathBuf, Vec<u8>)],
        spec: &ClusterSpec,
    ) -> SavedDefinition {
        let mut d = SavedDefinition {
            path: path.to_path_buf(),
            dir,
            vars,
            var_files,
            files: saved_files(reads),
            sha256: String::new(),
            spec_sha256: spec_sha256(spec),
        };
        d.sha256 = d.digest();
        d
    }

    fn digest(&self) -> String {
        let whole = serde_json::json!({
            "path": self.path,
            "dir": self.dir,
            "vars": self.vars,
            "var_files": self.var_files,
            "files": self.files,
        });
        hex_sha(whole.to_string().as_bytes())
    }

    /// Whether the plan file's copy is the one it was saved with.
    pub fn verify(&self) -> Result<(), SavedPlanError> {
        if self.digest() == self.sha256 {
            Ok(())
        } else {
            Err(SavedPlanError::Tampered)
        }
    }

    /// Checks a fresh load of the definition (its reads and validated spec) against what was saved.
    pub fn check(
        &self,
        reads: &[(PathBuf, Vec<u8>)],
        spec: &ClusterSpec,
    ) -> Result<(), SavedPlanError> {
        self.verify()?;
        let now = saved_files(reads);
        let mut changed: Vec<PathBuf> = Vec::new();
        for f in &self.files {
            if !now.iter().any(|n| n.path == f.path && n.sha256 == f.sha256) {
                changed.push(f.path.clone());
            }
        }
        for n in &now {
            if !self.files.iter().any(|f| f.path == n.path) && !changed.contains(&n.path) {
                changed.push(n.path.clone());
            }
        }
        if !changed.is_empty() {
            return Err(SavedPlanError::SourceChanged { changed });
        }
        if spec_sha256(spec) != self.spec_sha256 {
            return Err(SavedPlanError::SpecChanged);
        }
        Ok(())
    }
}

fn saved_files(reads: &[(PathBuf, Vec<u8>)]) -> Vec<SavedFile> {
    let mut out: Vec<SavedFile> = Vec::new();
    for (path, bytes) in reads {
        // A file read twice (a `file()` called twice) is kept once.
        if out.iter().any(|f| &f.path == path) {
            continue;
        }
        out.push(SavedFile {
            path: path.clone(),
            text: String::from_utf8_lossy(bytes).into_owned(),
            sha256: hex_sha(bytes),
        });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{LoadOptions, input, load};

    fn load_recorded(path: &Path) -> (ClusterSpec, Vec<(PathBuf, Vec<u8>)>) {
        let (loaded, reads) = input::recorded(|| load(path, &LoadOptions::default()));
        (loaded.expect("valid").spec, reads)
    }

    const DEF: &str = "variable \"n\" {\n  default = 1\n}\ncluster \"c\" {\n  provider \"local\" {}\n  pool \"masters\" {\n    role = \"master\"\n    count = var.n\n  }\n}\n";

    #[test]
    fn a_saved_definition_passes_its_check_until_a_file_it_read_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let def = dir.path().join("c.hcl");
        std::fs::write(&def, DEF).expect("write");
        let (spec, reads) = load_recorded(&def);
        let saved = SavedDefinition::new(&def, PathBuf::from("/w"), vec![], vec![], &reads, &spec);
        assert_eq!(saved.files.len(), 1);
        assert_eq!(saved.files[0].text, DEF);
        let (again, reads) = load_recorded(&def);
        saved.check(&reads, &again).expect("unchanged");

        std::fs::write(&def, DEF.replace("default = 1", "default = 3")).expect("write");
        let (changed, reads) = load_recorded(&def);
        let err = saved.check(&reads, &changed).expect_err("changed");
        assert!(
            matches!(&err, SavedPlanError::SourceChanged { changed } if changed == &vec![def.clone()]),
            "{err}"
        );
        // A new value file beside a folder definition is a change too.
        std::fs::write(&def, DEF).expect("write");
        let (spec, reads) = load_recorded(dir.path());
        let saved = SavedDefinition::new(
            dir.path(),
            PathBuf::from("/w"),
            vec![],
            vec![],
            &reads,
            &spec,
        );
        std::fs::write(dir.path().join("n.auto.hcl"), "n = 3\n").expect("write");
        let (changed, reads) = load_recorded(dir.path());
        assert!(matches!(
            saved.check(&reads, &changed),
            Err(SavedPlanError::SourceChanged { .. })
        ));
    }

    #[test]
    fn an_edited_copy_or_a_different_evaluation_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let def = dir.path().join("c.hcl");
        std::fs::write(&def, DEF).expect("write");
        let (spec, reads) = load_recorded(&def);
        let saved = SavedDefinition::new(&def, PathBuf::from("/w"), vec![], vec![], &reads, &spec);
        let mut edited = saved.clone();
        edited.files[0].text = DEF.replace("default = 1", "default = 9");
        assert!(matches!(edited.verify(), Err(SavedPlanError::Tampered)));
        let mut edited = saved.clone();
        edited.vars.push(("n".into(), "2".into()));
        assert!(matches!(
            edited.check(&reads, &spec),
            Err(SavedPlanError::Tampered)
        ));
        // Same files, another value from outside them.
        let mut other = spec.clone();
        other.pools[0].size = crate::spec::PoolSize::Count(2);
        assert!(matches!(
            saved.check(&reads, &other),
            Err(SavedPlanError::SpecChanged)
        ));
    }
}
