//! Small records the service keeps on disk beside the exports — the mail
//! outbox ([`crate::mail`]) and the last errors of failing schedules
//! ([`crate::schedule`]): one file per UUID in a directory private to the
//! service's user, each written atomically. Only a UUID, in its canonical
//! form, ever reaches a path.

use std::io::{self, Write};
use std::path::Path;

use uuid::Uuid;

/// Creates `dir` (and its parents) if missing, readable only by the
/// service's user.
pub(crate) fn open_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(dir)
}

/// The canonical form of `id` if it is a UUID: the only thing that may
/// name a record's file.
pub(crate) fn uuid_stem(id: &str) -> Option<String> {
    Uuid::try_parse(id).ok().map(|u| u.hyphenated().to_string())
}

/// Writes `bytes` to a temporary file in `dir`, syncs it and renames it to
/// `path`: readers see the old file or the new one, never a part.
pub(crate) fn write_atomic(dir: &Path, path: &Path, bytes: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".tmp-{}", Uuid::new_v4().simple()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let written = options
        .open(&tmp)
        .and_then(|mut file| {
            file.write_all(bytes)?;
            file.sync_all()
        })
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}
