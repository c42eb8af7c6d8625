//! A current ClickHouse engine (chDB, in-process in a Python helper) to check
//! that our SQL runs there too, not only on the local 18.16 server.
//!
//! `scripts/test` installs chDB (pinned by hash) into `.local/venv-chdb`;
//! `USAGE_CHDB_PYTHON` may name another interpreter that has it.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// A statement to run, named for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Statement {
    pub name: String,
    pub sql: String,
}

/// What the engine said of one statement.
#[derive(Debug, Clone, Deserialize)]
pub struct Outcome {
    pub name: String,
    pub ok: bool,
    /// What the statement answered (TabSeparated), when it ran.
    #[serde(default)]
    pub rows: Option<String>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The engine's version and the outcome of each statement, in order.
#[derive(Debug, Clone, Deserialize)]
pub struct Run {
    pub version: String,
    pub results: Vec<Outcome>,
}

impl Run {
    /// The statements that failed, as readable lines.
    pub fn failures(&self) -> Vec<String> {
        self.results
            .iter()
            .filter(|r| !r.ok)
            .map(|r| format!("{}: {}", r.name, r.error.as_deref().unwrap_or("?")))
            .collect()
    }
}

fn python() -> PathBuf {
    std::env::var_os("USAGE_CHDB_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join(".local/venv-chdb/bin/python"))
}

/// Runs `statements` in order in one chDB session, in `database`.
pub fn run(database: &str, statements: &[Statement]) -> Result<Run, String> {
    let python = python();
    if !python.exists() {
        return Err(format!(
            "{} not found: scripts/test installs chDB there (or set USAGE_CHDB_PYTHON)",
            python.display()
        ));
    }
    let script = crate::repo_root().join("tests/compat/chdb_exec.py");
    let mut child = Command::new(&python)
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", python.display()))?;
    let request = serde_json::json!({ "database": database, "statements": statements });
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(request.to_string().as_bytes())
        .map_err(|e| format!("writing to chDB helper: {e}"))?;
    let output = child
        .wait_with_output()
        .map_err(|e| format!("waiting for chDB helper: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "chDB helper failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    serde_json::from_slice(&output.stdout).map_err(|e| {
        format!(
            "chDB helper answered something else ({e}): {}",
            String::from_utf8_lossy(&output.stdout)
        )
    })
}
