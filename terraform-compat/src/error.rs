//! The one error type of the crate. Every variant is bad input (the caller maps it to exit 1) and names
//! where the problem is (`file:line:col`, or the field) and what would have been valid.

use std::path::PathBuf;

/// Why a file could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum CompatError {
    /// The file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid in its own syntax (HCL, YAML, JSON).
    #[error("{}:{line}:{col}: {message} ({hint})", file.display())]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        col: usize,
        /// What the parser said.
        message: String,
        /// What the file should look like.
        hint: String,
    },
    /// The file is well-formed but describes something dcform cannot convert (a module source it does
    /// not know, no cluster at all).
    #[error("{}:{line}: {message} ({hint})", file.display())]
    Unsupported {
        /// The file.
        file: PathBuf,
        /// 1-based line (0 when the whole file is meant).
        line: usize,
        /// What is wrong.
        message: String,
        /// What would be valid.
        hint: String,
    },
    /// A field of a YAML or JSON document is missing or has the wrong shape.
    #[error("{}: {field}: {message} ({hint})", file.display())]
    Field {
        /// The file.
        file: PathBuf,
        /// The field, as a path (`master_list`, `resources[3].instances`).
        field: String,
        /// What is wrong.
        message: String,
        /// What would be valid.
        hint: String,
    },
    /// The file is none of the kinds this crate reads.
    #[error("{}: {message} ({hint})", file.display())]
    NotRecognised {
        /// The file.
        file: PathBuf,
        /// What it looked like.
        message: String,
        /// What is accepted.
        hint: String,
    },
}

/// Shorthand for the crate's results.
pub type Result<T, E = CompatError> = std::result::Result<T, E>;
