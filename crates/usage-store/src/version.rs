use crate::StoreError;
use std::{fmt, str::FromStr};

/// A ClickHouse server version (`18.16.1`, `25.8.3.66`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ServerVersion {
    /// Servers before 19.x lack `LowCardinality` without an experimental
    /// setting, RowBinaryWithNamesAndTypes, TTL and several functions.
    pub fn is_legacy(&self) -> bool {
        self.major < 19
    }
}

impl FromStr for ServerVersion {
    type Err = StoreError;

    fn from_str(text: &str) -> Result<Self, StoreError> {
        let bad = || StoreError::BadVersion(text.to_owned());
        let mut parts = text.trim().split('.').map(|p| p.parse::<u32>());
        let major = parts.next().and_then(Result::ok).ok_or_else(bad)?;
        let minor = parts.next().and_then(Result::ok).ok_or_else(bad)?;
        let patch = parts.next().and_then(Result::ok).unwrap_or(0);
        Ok(ServerVersion {
            major,
            minor,
            patch,
        })
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_old_and_new_versions() {
        let old: ServerVersion = "18.16.1".parse().expect("valid");
        let new: ServerVersion = "25.8.3.66".parse().expect("valid");
        assert!(old.is_legacy());
        assert!(!new.is_legacy());
        assert!(old < new);
        assert!("x.y".parse::<ServerVersion>().is_err());
    }
}
