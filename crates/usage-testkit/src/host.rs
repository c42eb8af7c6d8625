//! The machine a measurement runs on (`/proc`), to record with its figures.

/// The load averages over 1, 5 and 15 minutes (`/proc/loadavg`), e.g.
/// `0.52 0.48 0.41`; empty when unreadable.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// The CPU's model name (`/proc/cpuinfo`); empty when unreadable.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_owned())
        })
        .unwrap_or_default()
}
