//! Privacy: keyed hashing of user identity (docs/rules.md rule 7).
//!
//! > *If your team's personal data (PII) is selected (On), user's names,
//! > email addresses, and profile images are displayed. If personal data isn't
//! > selected (Off), then that team's user's personal data will be hashed. If
//! > personal data is set to Off for one or more teams and All Teams is
//! > selected, then hashed data values are shown for all teams.*
//! > — the vendor's help page.
//!
//! - The hash is **HMAC-SHA-256** keyed with the deployment's secret, over the
//!   UTF-8 bytes of the `user_id` alone, as 64 lowercase hex digits
//!   ([`UserHasher::hash`]): the same user has the same hash in every team,
//!   report and export (so rows can still be told apart and joined), and it
//!   cannot be reversed — nor recomputed from a guessed id — without the
//!   secret.
//! - Whether identities are hashed ([`identities_hashed`]): for one team,
//!   iff that team's `pii_visible` is off; for All Teams, everyone is hashed
//!   iff any team in scope is off. Teams default to off ([`TeamDirectory`]):
//!   a team never described is hashed.
//! - What is shown ([`display_identity`], the one rule for the report, its
//!   page and its exports): when hashed, the hash as user key, name and
//!   email, and no avatar; otherwise the id and the profile.
//! - Team ids are current teams (after merges): the history of a merged team
//!   is shown under the privacy setting of the team it was merged into.

use std::collections::HashMap;
use std::fmt;

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::event::{Team, UserProfile};
use crate::team::TeamScope;

/// Why a hasher could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrivacyError {
    /// The secret is shorter than [`UserHasher::MIN_SECRET_LEN`].
    #[error("the identity-hashing secret must be at least {min} bytes, got {len}")]
    SecretTooShort {
        /// The length given.
        len: usize,
        /// The minimum length.
        min: usize,
    },
}

/// Hashes user ids with the deployment's secret (HMAC-SHA-256, hex).
#[derive(Clone)]
pub struct UserHasher {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for UserHasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("UserHasher { secret: <redacted> }")
    }
}

impl UserHasher {
    /// The shortest secret accepted (256 bits).
    pub const MIN_SECRET_LEN: usize = 32;

    /// A hasher keyed with `secret` (at least [`Self::MIN_SECRET_LEN`] bytes).
    pub fn new(secret: &[u8]) -> Result<UserHasher, PrivacyError> {
        if secret.len() < Self::MIN_SECRET_LEN {
            return Err(PrivacyError::SecretTooShort {
                len: secret.len(),
                min: Self::MIN_SECRET_LEN,
            });
        }
        // HMAC accepts keys of any length; the error branch is unreachable.
        let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map_err(|_| {
            PrivacyError::SecretTooShort {
                len: secret.len(),
                min: Self::MIN_SECRET_LEN,
            }
        })?;
        Ok(UserHasher { mac })
    }

    /// The stable keyed hash of `user_id`: 64 lowercase hex digits.
    pub fn hash(&self, user_id: &str) -> String {
        self.digest(user_id).to_string()
    }

    /// The keyed hash of `user_id` as its 32 bytes ([`UserHasher::hash`]
    /// is their hex): a fifth of the string's memory, in the same order.
    pub fn digest(&self, user_id: &str) -> UserDigest {
        let mut mac = self.mac.clone();
        mac.update(user_id.as_bytes());
        UserDigest(mac.finalize().into_bytes().into())
    }
}

/// The keyed hash of a user id as bytes ([`UserHasher::digest`]). Digests
/// order as their hex strings do (lowercase hex keeps the bytes' order);
/// `Display` writes the hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UserDigest([u8; 32]);

impl UserDigest {
    /// The 64 lowercase hex digits, without allocating.
    pub fn hex(&self) -> HexDigest {
        let mut out = [0u8; 64];
        // Both lengths are fixed: 32 bytes fill 64 digits exactly.
        let _ = hex::encode_to_slice(self.0, &mut out);
        HexDigest(out)
    }
}

impl fmt::Display for UserDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.hex())
    }
}

impl fmt::Debug for UserDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserDigest({self})")
    }
}

/// A digest's 64 hex digits, on the stack ([`UserDigest::hex`]).
#[derive(Clone, Copy)]
pub struct HexDigest([u8; 64]);

impl std::ops::Deref for HexDigest {
    type Target = str;

    fn deref(&self) -> &str {
        // Hex digits are ASCII.
        std::str::from_utf8(&self.0).unwrap_or_default()
    }
}

/// Rule 7: whether identities are hashed for a report over `scope`.
///
/// `teams_in_scope`: the (current) teams the report covers — for All Teams,
/// every team of the account; `pii_visible`: a team's setting (use
/// [`TeamDirectory::pii_visible`], which defaults to off).
pub fn identities_hashed<'a, I, F>(scope: TeamScope<'_>, teams_in_scope: I, pii_visible: F) -> bool
where
    I: IntoIterator<Item = &'a str>,
    F: Fn(&str) -> bool,
{
    match scope {
        TeamScope::Team(team) => !pii_visible(team),
        TeamScope::All => teams_in_scope.into_iter().any(|t| !pii_visible(t)),
    }
}

/// A user's identity as the report, its page and its exports show it: one
/// rule for every place an identity is shown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayIdentity {
    /// The user id, or its keyed hash when hashed.
    pub user_key: String,
    /// The name; the keyed hash when hashed; `None` when shown but no
    /// profile is known.
    pub name: Option<String>,
    /// The email; the keyed hash when hashed; `None` when shown but no
    /// profile is known.
    pub email: Option<String>,
    /// Never shown when hashed; `None` when unknown or empty.
    pub avatar_url: Option<String>,
}

/// The identity to show for `user_id` (rule 7): when `hashed`, its keyed
/// hash (`hash`, e.g. [`UserHasher::hash`] or a cache in front of it) as
/// key, name and email, and no avatar ("hashed data values are shown");
/// otherwise the id and the profile's fields.
pub fn display_identity(
    user_id: &str,
    profile: Option<UserProfile>,
    hashed: bool,
    hash: impl FnOnce(&str) -> String,
) -> DisplayIdentity {
    if hashed {
        let h = hash(user_id);
        return DisplayIdentity {
            user_key: h.clone(),
            name: Some(h.clone()),
            email: Some(h),
            avatar_url: None,
        };
    }
    match profile {
        Some(p) => DisplayIdentity {
            user_key: user_id.to_owned(),
            name: Some(p.name),
            email: Some(p.email),
            avatar_url: p.avatar_url.filter(|a| !a.is_empty()),
        },
        None => DisplayIdentity {
            user_key: user_id.to_owned(),
            name: None,
            email: None,
            avatar_url: None,
        },
    }
}

/// Teams and their privacy setting, from `team` directory events, latest
/// publication wins (greatest `(occurred_at, event_id)`: order-independent).
#[derive(Debug, Clone, Default)]
pub struct TeamDirectory {
    teams: HashMap<Box<str>, TeamEntry>,
}

#[derive(Debug, Clone)]
struct TeamEntry {
    name: String,
    pii_visible: bool,
    published: (DateTime<Utc>, Box<str>),
}

impl TeamDirectory {
    /// An empty directory: every team is off.
    pub fn new() -> TeamDirectory {
        TeamDirectory::default()
    }

    /// Applies a `team` event published by `event_id` at `published_at`.
    /// Returns whether it is now the latest word on that team.
    pub fn apply(&mut self, event_id: &str, published_at: DateTime<Utc>, team: &Team) -> bool {
        let entry = TeamEntry {
            name: team.name.clone(),
            pii_visible: team.pii_visible,
            published: (published_at, event_id.into()),
        };
        match self.teams.get_mut(team.team_id.as_str()) {
            Some(held)
                if (&held.published.0, &held.published.1)
                    >= (&entry.published.0, &entry.published.1) =>
            {
                false
            }
            Some(held) => {
                *held = entry;
                true
            }
            None => {
                self.teams.insert(team.team_id.as_str().into(), entry);
                true
            }
        }
    }

    /// The team's `pii_visible`; **off** for a team never described.
    pub fn pii_visible(&self, team_id: &str) -> bool {
        self.teams.get(team_id).is_some_and(|t| t.pii_visible)
    }

    /// The team's name, if known.
    pub fn name(&self, team_id: &str) -> Option<&str> {
        self.teams.get(team_id).map(|t| t.name.as_str())
    }

    /// Every known team id, sorted.
    pub fn team_ids(&self) -> Vec<&str> {
        let mut ids: Vec<&str> = self.teams.keys().map(|k| &**k).collect();
        ids.sort_unstable();
        ids
    }
}
