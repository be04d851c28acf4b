//! The dcform node image: a Debian bookworm root filesystem with OpenSSH, built locally.
//!
//! ```text
//! recipe (suite, packages, entry script) --sha256--> recipe hash
//!   image labelled dcform.recipe=<hash> exists? --yes--> reuse (tag it if needed)
//!                                              --no---> mmdebstrap | docker import   (no registry needed)
//!                                                       or docker build FROM debian  (fallback when mmdebstrap is absent)
//! ```
//!
//! The image has no systemd: its entry command (`templates/node-image/dcform-node-init`) creates
//! `/run/sshd`, generates host keys at container start (so every container has its own; types from
//! env `DCFORM_HOST_KEY_TYPES`, default `ed25519 ecdsa`), installs the
//! authorized key given at creation (env `DCFORM_AUTHORIZED_KEYS` or a file bind-mounted at
//! `/dcform/authorized_keys`) and runs `sshd -D -e` in the foreground.
//!
//! The docker CLI is used rather than bollard: the build is a pipe (`mmdebstrap ... - | docker import -`),
//! the same commands appear in CI scripts and error messages a user can re-run by hand, and this crate
//! stays free of an HTTP client stack. All functions here block; call them from `spawn_blocking`.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

/// The entry script baked into the image at `/usr/local/sbin/dcform-node-init`.
pub const NODE_INIT_SCRIPT: &str = include_str!("../../../templates/node-image/dcform-node-init");

/// Path of the entry script inside the image.
pub const NODE_INIT_PATH: &str = "/usr/local/sbin/dcform-node-init";

/// Environment variable read by the entry script: authorized public key line(s) for root.
pub const AUTHORIZED_KEYS_ENV: &str = "DCFORM_AUTHORIZED_KEYS";

/// Label holding the dcform version that built an image.
pub const VERSION_LABEL: &str = "dcform.version";

/// Label holding the recipe hash, used to reuse an image built from the same recipe.
pub const RECIPE_LABEL: &str = "dcform.recipe";

/// Default tag of the node image.
pub const DEFAULT_TAG: &str = "dcform-node:bookworm";

/// Packages every node image holds; the installer needs only what minbase, these and coreutils give
/// (`sh`, `sha256sum`, `ss`, `ps`, `sudo`).
pub const BASE_PACKAGES: &[&str] = &[
    "openssh-server",
    "iproute2",
    "procps",
    "ca-certificates",
    "sudo",
];

/// Errors of building or finding the node image.
#[derive(Debug, thiserror::Error)]
pub enum NodeImageError {
    /// The docker CLI could not be started at all.
    #[error("cannot run `docker` (is Docker Engine installed and on PATH?)")]
    DockerMissing(#[source] std::io::Error),
    /// A command of the build failed; `tail` holds the end of its output.
    #[error("`{command}` failed ({status}):\n{tail}")]
    CommandFailed {
        /// The command line that failed.
        command: String,
        /// Its exit status as text.
        status: String,
        /// Last lines of its output.
        tail: String,
    },
    /// Neither mmdebstrap nor a Debian base image from a registry could be used.
    #[error(
        "cannot build the node image: mmdebstrap is not installed (apt-get install mmdebstrap) and the \
         docker build fallback failed"
    )]
    NoBuildPath(#[source] Box<NodeImageError>),
    /// Local file work (temp dir, lock file) failed.
    #[error("node image: {what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How to build the node image.
#[derive(Debug, Clone)]
pub struct NodeImageOptions {
    /// Image tag to give the result, e.g. `dcform-node:bookworm`.
    pub tag: String,
    /// Debian suite.
    pub suite: String,
    /// Debian mirror for mmdebstrap; `None` uses mmdebstrap's default (deb.debian.org).
    pub mirror: Option<String>,
    /// Packages added to [`BASE_PACKAGES`].
    pub extra_packages: Vec<String>,
    /// Directory of the lock file that serialises builds on this machine.
    pub lock_dir: PathBuf,
    /// Rebuild even when an image from the same recipe exists.
    pub force: bool,
}

impl Default for NodeImageOptions {
    fn default() -> Self {
        Self {
            tag: DEFAULT_TAG.to_string(),
            suite: "bookworm".to_string(),
            mirror: None,
            extra_packages: Vec::new(),
            lock_dir: std::env::temp_dir(),
            force: false,
        }
    }
}

/// Which way an image came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BuildPath {
    /// Root filesystem from Debian packages with mmdebstrap, then `docker import`.
    Mmdebstrap,
    /// `docker build` from a Debian base image (needs a registry).
    DockerBuild,
    /// An image from the same recipe already existed and was reused.
    Cached,
}

impl std::fmt::Display for BuildPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BuildPath::Mmdebstrap => "mmdebstrap | docker import",
            BuildPath::DockerBuild => "docker build from a Debian base image",
            BuildPath::Cached => "reused (same recipe)",
        })
    }
}

/// The resulting image.
#[derive(Debug, Clone)]
pub struct ImageInfo {
    /// The tag asked for.
    pub tag: String,
    /// Docker image id.
    pub id: String,
    /// sha256 of the recipe (the `dcform.recipe` label).
    pub recipe_hash: String,
    /// How it was obtained.
    pub path: BuildPath,
}

impl NodeImageOptions {
    fn packages(&self) -> Vec<String> {
        let mut p: Vec<String> = BASE_PACKAGES.iter().map(|s| s.to_string()).collect();
        p.extend(self.extra_packages.iter().cloned());
        p.sort();
        p.dedup();
        p
    }

    /// Hash of everything that decides the image content: suite, packages, entry script, version.
    pub fn recipe_hash(&self) -> String {
        let mut h = Sha256::new();
        h.update(b"dcform-node-image v1\0");
        h.update(env!("CARGO_PKG_VERSION").as_bytes());
        h.update(b"\0");
        h.update(self.suite.as_bytes());
        h.update(b"\0");
        for p in self.packages() {
            h.update(p.as_bytes());
            h.update(b"\0");
        }
        h.update(NODE_INIT_SCRIPT.as_bytes());
        hex::encode(h.finalize())
    }
}

/// Returns the image already built from this recipe, if any (tagging it with `opts.tag` when needed).
pub fn find_cached(opts: &NodeImageOptions) -> Result<Option<ImageInfo>, NodeImageError> {
    let hash = opts.recipe_hash();
    let out = docker_output(&[
        "images",
        "--no-trunc",
        "--filter",
        &format!("label={RECIPE_LABEL}={hash}"),
        "--format",
        "{{.ID}}",
    ])?;
    let Some(id) = out.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return Ok(None);
    };
    let id = id.to_string();
    // Same content under another tag (or the tag was removed): give it the asked-for tag too.
    let tagged = docker_output(&["image", "inspect", "--format", "{{.Id}}", &opts.tag]).ok();
    if tagged.as_deref().map(str::trim) != Some(id.as_str()) {
        docker_output(&["tag", &id, &opts.tag])?;
    }
    Ok(Some(ImageInfo {
        tag: opts.tag.clone(),
        id,
        recipe_hash: hash,
        path: BuildPath::Cached,
    }))
}

/// Builds the image if no image from the same recipe exists (or `opts.force` is set). Serialised by
/// a lock file in `opts.lock_dir`, so parallel tests and CLI runs build it once.
pub fn ensure(
    opts: &NodeImageOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageInfo, NodeImageError> {
    let _lock = lock_builds(opts, progress)?;
    if let Some(info) = if opts.force { None } else { find_cached(opts)? } {
        progress(&format!(
            "node image {} is up to date (recipe {})",
            info.tag,
            &info.recipe_hash[..12]
        ));
        return Ok(info);
    }
    build_unlocked(opts, progress)
}

/// Builds the image now, even if one from the same recipe exists (`dcform node-image build`).
/// Takes the same lock as [`ensure`].
pub fn build(
    opts: &NodeImageOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageInfo, NodeImageError> {
    let _lock = lock_builds(opts, progress)?;
    build_unlocked(opts, progress)
}

/// Takes the machine-wide build lock; it is released when the returned file drops.
fn lock_builds(
    opts: &NodeImageOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<File, NodeImageError> {
    let lock_path = opts.lock_dir.join("dcform-node-image.lock");
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|source| NodeImageError::Io {
            what: format!("open lock file {}", lock_path.display()),
            source,
        })?;
    if lock.try_lock().is_err() {
        progress("waiting for another node image build to finish");
        lock.lock().map_err(|source| NodeImageError::Io {
            what: format!("lock {}", lock_path.display()),
            source,
        })?;
    }
    Ok(lock)
}

fn build_unlocked(
    opts: &NodeImageOptions,
    progress: &mut dyn FnMut(&str),
) -> Result<ImageInfo, NodeImageError> {
    let hash = opts.recipe_hash();
    // The image the tag pointed at before, to drop once the tag moves (see below).
    let previous = docker_output(&["image", "inspect", "--format", "{{.Id}}", &opts.tag])
        .ok()
        .map(|s| s.trim().to_string());
    let dir = tempdir_for_build()?;
    let init = dir.join("dcform-node-init");
    std::fs::write(&init, NODE_INIT_SCRIPT).map_err(|source| NodeImageError::Io {
        what: format!("write {}", init.display()),
        source,
    })?;
    let result = if which("mmdebstrap") {
        progress("building node image with mmdebstrap | docker import");
        build_mmdebstrap(opts, &hash, &init, progress).map(|id| (id, BuildPath::Mmdebstrap))
    } else {
        progress("mmdebstrap not found: falling back to docker build from debian:<suite>-slim");
        build_docker(opts, &hash, &dir, progress)
            .map(|id| (id, BuildPath::DockerBuild))
            .map_err(|e| NodeImageError::NoBuildPath(Box::new(e)))
    };
    let _ = std::fs::remove_dir_all(&dir);
    let (id, path) = result?;
    progress(&format!("node image {} built ({path})", opts.tag));
    // An untagged old node image still carries the dcform.version label and would be listed by
    // `docker images --filter label=dcform.version`. Remove it unless containers still use it
    // (no --force: docker refuses then, and that is fine).
    if let Some(old) = previous.filter(|old| !old.is_empty() && !id.contains(old.as_str()))
        && docker_output(&["image", "rm", &old]).is_ok()
    {
        progress(&format!(
            "removed the previous node image {}",
            &old[..old.len().min(19)]
        ));
    }

    Ok(ImageInfo {
        tag: opts.tag.clone(),
        id,
        recipe_hash: hash,
        path,
    })
}

fn build_mmdebstrap(
    opts: &NodeImageOptions,
    hash: &str,
    init: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<String, NodeImageError> {
    let include = opts.packages().join(",");
    let mut mm = Command::new("mmdebstrap");
    mm.args(["--variant=minbase", &format!("--include={include}")])
        // Documentation and translations are dead weight in a node image.
        .args([
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
        ])
        // Host keys generated by the openssh-server postinst would be shared by every container.
        .arg("--customize-hook=rm -f \"$1\"/etc/ssh/ssh_host_*")
        .arg(format!(
            "--customize-hook=upload {} {NODE_INIT_PATH}",
            init.display()
        ))
        .arg(format!(
            "--customize-hook=chmod 0755 \"$1\"{NODE_INIT_PATH}"
        ))
        .arg(&opts.suite)
        .arg("-");
    if let Some(m) = &opts.mirror {
        mm.arg(m);
    }
    mm.stdout(Stdio::piped()).stderr(Stdio::piped());
    let cmdline = format!(
        "mmdebstrap --variant=minbase --include={include} ... {} -",
        opts.suite
    );
    let mut child = mm.spawn().map_err(|source| NodeImageError::Io {
        what: "start mmdebstrap".into(),
        source,
    })?;
    let tar = child
        .stdout
        .take()
        .expect("invariant: stdout was piped above");
    let stderr = child
        .stderr
        .take()
        .expect("invariant: stderr was piped above");

    let import_args = import_changes(hash);
    let mut import = Command::new("docker");
    import
        .arg("import")
        .args(&import_args)
        .arg("-")
        .arg(&opts.tag)
        .stdin(Stdio::from(tar))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let import_child = import.spawn().map_err(NodeImageError::DockerMissing)?;

    // mmdebstrap's progress goes to stderr; forward each line while docker import consumes the tar.
    let mut tail = Tail::default();
    for line in BufReader::new(stderr).lines().map_while(Result::ok) {
        if line.starts_with("I: ") || line.starts_with("E: ") || line.starts_with("W: ") {
            progress(&format!("mmdebstrap: {}", &line[3..]));
        }
        tail.push(line);
    }
    let mm_status = child.wait().map_err(|source| NodeImageError::Io {
        what: "wait for mmdebstrap".into(),
        source,
    })?;
    let out = import_child
        .wait_with_output()
        .map_err(NodeImageError::DockerMissing)?;
    if !mm_status.success() {
        return Err(NodeImageError::CommandFailed {
            command: cmdline,
            status: mm_status.to_string(),
            tail: tail.text(),
        });
    }
    if !out.status.success() {
        return Err(NodeImageError::CommandFailed {
            command: format!("docker import - {}", opts.tag),
            status: out.status.to_string(),
            tail: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn import_changes(hash: &str) -> Vec<String> {
    vec![
        "--change".into(),
        format!("CMD [\"{NODE_INIT_PATH}\"]"),
        "--change".into(),
        "EXPOSE 22".into(),
        "--change".into(),
        format!("LABEL {VERSION_LABEL}={}", env!("CARGO_PKG_VERSION")),
        "--change".into(),
        format!("LABEL {RECIPE_LABEL}={hash}"),
    ]
}

/// The fallback recipe: the same packages, entry script, labels and command as the mmdebstrap path.
fn dockerfile(opts: &NodeImageOptions, hash: &str) -> String {
    format!(
        "FROM debian:{suite}-slim\n\
         RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends {pkgs} \\\n \
         && rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*\n\
         COPY dcform-node-init {NODE_INIT_PATH}\n\
         RUN chmod 0755 {NODE_INIT_PATH}\n\
         EXPOSE 22\n\
         LABEL {VERSION_LABEL}={version} {RECIPE_LABEL}={hash}\n\
         CMD [\"{NODE_INIT_PATH}\"]\n",
        suite = opts.suite,
        pkgs = opts.packages().join(" "),
        version = env!("CARGO_PKG_VERSION"),
    )
}

fn build_docker(
    opts: &NodeImageOptions,
    hash: &str,
    dir: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<String, NodeImageError> {
    let dockerfile = dockerfile(opts, hash);
    let df = dir.join("Dockerfile");
    std::fs::write(&df, dockerfile).map_err(|source| NodeImageError::Io {
        what: format!("write {}", df.display()),
        source,
    })?;
    let mut child = Command::new("docker")
        .args(["build", "-q", "-t", &opts.tag])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(NodeImageError::DockerMissing)?;
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    let out = child
        .wait_with_output()
        .map_err(NodeImageError::DockerMissing)?;
    if !out.status.success() {
        return Err(NodeImageError::CommandFailed {
            command: format!("docker build -t {} {}", opts.tag, dir.display()),
            status: out.status.to_string(),
            tail: last_lines(&err, 20),
        });
    }
    progress("docker build finished");
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn tempdir_for_build() -> Result<PathBuf, NodeImageError> {
    let dir = std::env::temp_dir().join(format!("dcform-node-image-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|source| NodeImageError::Io {
        what: format!("create {}", dir.display()),
        source,
    })?;
    Ok(dir)
}

fn which(prog: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|p| p.join(prog).is_file()))
}

fn docker_output(args: &[&str]) -> Result<String, NodeImageError> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .map_err(NodeImageError::DockerMissing)?;
    if !out.status.success() {
        return Err(NodeImageError::CommandFailed {
            command: format!("docker {}", args.join(" ")),
            status: out.status.to_string(),
            tail: last_lines(&String::from_utf8_lossy(&out.stderr), 20),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// The last 20 lines of a stream, for error messages.
#[derive(Default)]
struct Tail(std::collections::VecDeque<String>);

impl Tail {
    fn push(&mut self, line: String) {
        if self.0.len() == 20 {
            self.0.pop_front();
        }
        self.0.push_back(line);
    }
    fn text(&self) -> String {
        self.0.iter().cloned().collect::<Vec<_>>().join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipe_hash_changes_with_packages_but_not_with_their_order() {
        let a = NodeImageOptions::default();
        let b = NodeImageOptions {
            extra_packages: vec!["curl".into()],
            ..Default::default()
        };
        // sudo is already a base package.
        let c = NodeImageOptions {
            extra_packages: vec!["sudo".into()],
            ..Default::default()
        };
        assert_ne!(a.recipe_hash(), b.recipe_hash());
        assert_eq!(a.recipe_hash(), c.recipe_hash());
    }

    #[test]
    fn fallback_dockerfile_matches_the_mmdebstrap_recipe() {
        let d = dockerfile(&NodeImageOptions::default(), "abc");
        assert!(d.starts_with("FROM debian:bookworm-slim\n"));
        assert!(d.contains(
            "install -y --no-install-recommends ca-certificates iproute2 openssh-server procps sudo"
        ));
        assert!(d.contains("rm -rf /var/lib/apt/lists/* /etc/ssh/ssh_host_*"));
        assert!(d.contains(&format!(
            "LABEL dcform.version={} dcform.recipe=abc",
            env!("CARGO_PKG_VERSION")
        )));
        assert!(d.contains("CMD [\"/usr/local/sbin/dcform-node-init\"]"));
        let changes = import_changes("abc").join(" ");
        assert!(changes.contains("CMD [\"/usr/local/sbin/dcform-node-init\"]"));
        assert!(changes.contains("LABEL dcform.recipe=abc"));
    }

    #[test]
    fn entry_script_generates_host_keys_at_start_and_runs_sshd_in_foreground() {
        assert!(NODE_INIT_SCRIPT.contains("ssh-keygen -q -t \"$t\""));
        assert!(NODE_INIT_SCRIPT.contains("mkdir -p /run/sshd"));
        assert!(NODE_INIT_SCRIPT.contains("exec /usr/sbin/sshd -D -e $hostkey_opts"));
    }
}
