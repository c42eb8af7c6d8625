//! The workspace's binaries, built with cargo for a harness to start.

use anyhow::{ensure, Context, Result};
use std::path::PathBuf;
use std::process::Command;

/// A cargo build profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Profile {
    /// `target/debug` (`cargo build`).
    Debug,
    /// `target/release` (`cargo build --release`).
    Release,
}

impl Profile {
    /// The directory of its binaries under the target directory.
    pub fn dir_name(self) -> &'static str {
        match self {
            Profile::Debug => "debug",
            Profile::Release => "release",
        }
    }
}

/// The target directory: `CARGO_TARGET_DIR`, or `target` in the repository.
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"))
}

/// Builds binary `name` of `package` (`cargo build -q -p <package> --bin
/// <name>`, quick when it is up to date) and returns its path.
pub fn build(package: &str, name: &str, profile: Profile) -> Result<PathBuf> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .args(["build", "-q", "-p", package, "--bin", name])
        .current_dir(crate::repo_root());
    if profile == Profile::Release {
        command.arg("--release");
    }
    let status = command.status().context("running cargo build")?;
    ensure!(
        status.success(),
        "cargo build -p {package} --bin {name} failed"
    );
    Ok(target_dir().join(profile.dir_name()).join(name))
}
