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

/// Clock ticks per second of `/proc/<pid>/stat`'s times (`USER_HZ`: 100 on
/// every Linux architecture this runs on; the kernel fixes it for user space).
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time a process has used so far, user plus system, all its threads
/// (`utime` + `stime` of `/proc/<pid>/stat`), in seconds; None when the
/// process is gone.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    cpu_seconds_of_stat(&stat)
}

/// `utime` + `stime` (fields 14 and 15) of a `stat` line, in seconds. The
/// command name (field 2) is in parentheses and may hold spaces: fields are
/// counted after its closing parenthesis.
fn cpu_seconds_of_stat(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

/// The process listening on TCP `port` on this machine (IPv4 or IPv6), if
/// any and if its file descriptors can be read: the socket's inode from
/// `/proc/net/tcp*`, then the process holding it.
pub fn listening_pid(port: u16) -> Option<u32> {
    let inodes: Vec<String> = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .flat_map(|table| listening_inodes(&table, port))
        .collect();
    if inodes.is_empty() {
        return None;
    }
    let wanted: Vec<String> = inodes.iter().map(|i| format!("socket:[{i}]")).collect();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                if wanted.iter().any(|w| target.as_os_str() == w.as_str()) {
                    return Some(pid);
                }
            }
        }
    }
    None
}

/// The inodes of the sockets listening on `port` in a `/proc/net/tcp` table.
fn listening_inodes(table: &str, port: u16) -> Vec<String> {
    const LISTEN: &str = "0A";
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let local = fields.get(1)?;
            let (_, hex_port) = local.rsplit_once(':')?;
            let listening = fields.get(3) == Some(&LISTEN);
            (listening && u16::from_str_radix(hex_port, 16).ok()? == port)
                .then(|| fields.get(9).map(|i| (*i).to_owned()))
                .flatten()
        })
        .collect()
}

/// What `path` is stored on, in words for a benchmark's record: the
/// filesystem type and device, and for ext4 whether it keeps a journal
/// (`/sys/fs/ext4/<device>/journal_task` reads `<none>` without one). On
/// ext4 without a journal, creating a file gets slower the more files were
/// deleted in the minutes before, which ClickHouse's inserts and merges
/// feel (docs/local-services.md). None when `/proc/self/mountinfo` does not
/// say.
pub fn filesystem_of(path: &std::path::Path) -> Option<String> {
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mount_of(&mounts, path)?;
    let device = mount.source.rsplit('/').next().unwrap_or(mount.source);
    let journal = (mount.fstype == "ext4")
        .then(|| std::fs::read_to_string(format!("/sys/fs/ext4/{device}/journal_task")).ok())
        .flatten()
        .map(|task| {
            if task.trim() == "<none>" {
                " without a journal"
            } else {
                " with a journal"
            }
        })
        .unwrap_or("");
    Some(format!(
        "{}{journal} ({} on {})",
        mount.fstype, mount.source, mount.point
    ))
}

/// A mount of `/proc/self/mountinfo`.
#[derive(Debug, PartialEq, Eq)]
struct Mount<'a> {
    point: &'a str,
    fstype: &'a str,
    source: &'a str,
}

/// The mount `path` is under: the one with the longest mount point that is
/// a prefix of it, component-wise (the last such line when several mounts
/// share it: the one on top).
fn mount_of<'a>(mountinfo: &'a str, path: &std::path::Path) -> Option<Mount<'a>> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (before, after) = line.split_once(" - ")?;
            let point = before.split_whitespace().nth(4)?;
            let mut after = after.split_whitespace();
            let (fstype, source) = (after.next()?, after.next()?);
            path.starts_with(point).then_some(Mount {
                point,
                fstype,
                source,
            })
        })
        .fold(None, |best: Option<Mount<'a>>, m| match best {
            Some(b) if b.point.len() > m.point.len() => Some(b),
            _ => Some(m),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_after_the_command_name() {
        let stat = "42 (a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0 10 0 0";
        assert_eq!(cpu_seconds_of_stat(stat), Some(3.0));
        assert!(cpu_seconds(std::process::id()).is_some_and(|s| s >= 0.0));
    }

    #[test]
    fn listening_sockets_are_found_by_port() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
            0: 0100007F:2384 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0 100 0 0 10 0\n   \
            1: 0100007F:2384 0100007F:D431 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0 20 4 30 10 -1\n";
        assert_eq!(listening_inodes(table, 9092), ["111"]);
        assert!(listening_inodes(table, 8123).is_empty());
    }

    #[test]
    fn a_path_is_on_the_longest_mount_point_above_it() {
        let mountinfo = "\
22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw,discard
30 22 0:26 / /tmp rw,nosuid shared:5 - tmpfs tmpfs rw
41 22 7:0 / /mnt/ch rw,relatime shared:9 - ext4 /dev/loop0 rw
42 22 7:1 / /mnt/ch rw,relatime shared:10 - xfs /dev/loop1 rw
";
        let on = |p: &str| mount_of(mountinfo, std::path::Path::new(p)).map(|m| m.source);
        assert_eq!(
            on("/work/main/.local/services/clickhouse/data"),
            Some("/dev/vda")
        );
        assert_eq!(on("/tmp/x"), Some("tmpfs"));
        assert_eq!(
            on("/tmpfoo"),
            Some("/dev/vda"),
            "components, not characters"
        );
        assert_eq!(on("/mnt/ch/.local"), Some("/dev/loop1"), "the mount on top");
        assert!(filesystem_of(std::path::Path::new("/")).is_some_and(|f| !f.is_empty()));
    }
}
