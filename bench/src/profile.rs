//! A flame graph of one usage-ingest run: `perf record` of the process
//! (sampled at [`FREQUENCY`] Hz, call graphs unwound from DWARF — the
//! release build then needs line tables: `bench/run --flamegraph` builds
//! with them), folded and rendered to SVG by `inferno`
//! (`cargo install inferno --version 0.12.3 --locked --root .local/inferno`:
//! its binaries are looked for in `.local/inferno/bin`, then on `PATH`).

use anyhow::{bail, Context};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// Samples per second: enough for a ~10 s run, small enough for `perf
/// script` to unwind them in a minute or two.
const FREQUENCY: &str = "199";

/// `perf record` attached to a process.
pub(crate) struct Recording {
    perf: Child,
    data: PathBuf,
}

/// Starts recording `pid` into `dir/perf-<pid>.data`.
pub(crate) fn record(pid: u32, dir: &Path) -> anyhow::Result<Recording> {
    let data = dir.join(format!("perf-{pid}.data"));
    let perf = Command::new("perf")
        .args([
            "record",
            "-F",
            FREQUENCY,
            "--call-graph",
            "dwarf,16384",
            "-p",
        ])
        .arg(pid.to_string())
        .arg("-o")
        .arg(&data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .context("starting perf record (Debian's linux-perf)")?;
    Ok(Recording { perf, data })
}

/// An `inferno` binary: from `.local/inferno/bin` if there, else by name on `PATH`.
fn inferno(name: &str) -> PathBuf {
    let local = usage_testkit::repo_root()
        .join(".local/inferno/bin")
        .join(name);
    if local.exists() {
        local
    } else {
        PathBuf::from(name)
    }
}

impl Recording {
    /// Stops recording (SIGINT, as perf expects) and renders the samples
    /// to `svg` under `title`.
    pub(crate) fn finish(mut self, svg: &Path, title: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-INT", &self.perf.id().to_string()])
            .status()
            .context("stopping perf record")?;
        if !status.success() {
            bail!("could not signal perf record");
        }
        self.perf.wait().context("waiting for perf record")?;
        let script = Command::new("perf")
            .args(["script", "--no-inline", "-i"])
            .arg(&self.data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .context("perf script")?;
        let collapse = Command::new(inferno("inferno-collapse-perf"))
            .stdin(script.stdout.context("perf script's output")?)
            .stdout(Stdio::piped())
            .spawn()
            .context("inferno-collapse-perf (cargo install inferno --version 0.12.3 --locked --root .local/inferno)")?;
        if let Some(dir) = svg.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let out =
            std::fs::File::create(svg).with_context(|| format!("creating {}", svg.display()))?;
        let status = Command::new(inferno("inferno-flamegraph"))
            .args(["--title", title, "--width", "1600"])
            .stdin(collapse.stdout.context("inferno-collapse-perf's output")?)
            .stdout(out)
            .status()
            .context("inferno-flamegraph")?;
        let _ = std::fs::remove_file(&self.data);
        if !status.success() {
            bail!("inferno-flamegraph failed: {status}");
        }
        Ok(())
    }
}
