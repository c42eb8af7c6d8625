//! The memory of a process, from `/proc/<pid>/status`, in bytes.

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// `VmRSS`: resident now.
    pub rss_bytes: u64,
    /// `VmHWM`: the peak resident so far.
    pub peak_bytes: u64,
}

/// `VmRSS` and `VmHWM` of `pid`; None when the process is gone (or a zombie,
/// which has no memory lines).
pub fn of(pid: u32) -> Option<Memory> {
    let status = read_status(pid)?;
    Some(Memory {
        rss_bytes: field_bytes(&status, "VmRSS")?,
        peak_bytes: field_bytes(&status, "VmHWM")?,
    })
}

/// `VmRSS` of `pid`, in bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    field_bytes(&read_status(pid)?, "VmRSS")
}

/// `VmHWM` (peak RSS) of `pid`, in bytes.
pub fn peak_bytes(pid: u32) -> Option<u64> {
    field_bytes(&read_status(pid)?, "VmHWM")
}

fn read_status(pid: u32) -> Option<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status")).ok()
}

/// A field of a `status` file given in kB (`VmRSS:   1234 kB`), in bytes.
fn field_bytes(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| {
        l.strip_prefix(field)
            .is_some_and(|rest| rest.starts_with(':'))
    })?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kib_fields_as_bytes() {
        let status = "Name:\tx\nVmHWM:\t    2048 kB\nVmRSS:\t    1024 kB\n";
        assert_eq!(field_bytes(status, "VmRSS"), Some(1024 * 1024));
        assert_eq!(field_bytes(status, "VmHWM"), Some(2048 * 1024));
        assert_eq!(field_bytes(status, "VmRS"), None);
    }

    #[test]
    fn reads_this_process() {
        let memory = of(std::process::id()).expect("this process has memory");
        assert!(memory.rss_bytes > 0 && memory.peak_bytes >= memory.rss_bytes);
    }
}
