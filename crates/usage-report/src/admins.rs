//! Who may read the report: admins, each with a bearer token, a role and the
//! teams they administer, from a TOML file.
//!
//! ```toml
//! [[admin]]
//! id = "ada"
//! email = "ada@example.com"
//! role = "primary"                 # primary | secondary | sso | user_admin
//! teams = ["team-1", "team-2"]     # or ["*"] for every team
//! token_sha256 = "9f86d0…"         # hex SHA-256 of the token (preferred)
//! # token = "…"                    # or the token itself (kept only as its hash)
//! ```
//!
//! A presented token is hashed and compared with every admin's hash in
//! constant time, all of them, so neither timing nor logs say anything
//! about tokens.

use std::path::Path;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use usage_core::admin::AdminRole;

/// Why the admins file was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminsError {
    #[error("cannot read the admins file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("the admins file {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

/// An admin's role (`primary`, `secondary`, `sso`, `user_admin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Primary,
    Secondary,
    Sso,
    UserAdmin,
}

impl Role {
    /// The core's view of the role.
    pub fn admin_role(self) -> AdminRole {
        match self {
            Role::Primary => AdminRole::Primary,
            Role::Secondary => AdminRole::Secondary,
            Role::Sso => AdminRole::Sso,
            Role::UserAdmin => AdminRole::Other,
        }
    }
}

/// The teams an admin administers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Teams {
    /// `["*"]`: every team.
    Every,
    /// These (current) teams.
    Only(Vec<String>),
}

impl Teams {
    /// Whether the admin administers `team`.
    pub fn includes(&self, team: &str) -> bool {
        match self {
            Teams::Every => true,
            Teams::Only(teams) => teams.iter().any(|t| t == team),
        }
    }
}

/// An admin of the account.
#[derive(Debug, Clone)]
pub struct Admin {
    pub id: String,
    pub email: String,
    pub role: Role,
    pub teams: Teams,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminEntry {
    id: String,
    email: String,
    role: Role,
    teams: Vec<String>,
    #[serde(default)]
    token_sha256: Option<String>,
    #[serde(default)]
    token: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AdminsFile {
    #[serde(default)]
    admin: Vec<AdminEntry>,
}

/// The admins, each with the SHA-256 of their token.
#[derive(Clone, Default)]
pub struct Admins {
    entries: Vec<([u8; 32], Admin)>,
}

impl std::fmt::Debug for Admins {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admins")
            .field("count", &self.entries.len())
            .finish()
    }
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

impl Admins {
    /// Reads the admins file.
    pub fn load(path: &Path) -> Result<Admins, AdminsError> {
        let text = std::fs::read_to_string(path).map_err(|source| AdminsError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Admins::parse(&text).map_err(|message| AdminsError::Invalid {
            path: path.display().to_string(),
            message,
        })
    }

    /// Parses the TOML text of an admins file.
    pub fn parse(text: &str) -> Result<Admins, String> {
        let file: AdminsFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut admins = Admins::default();
        for entry in file.admin {
            let hash = match (&entry.token_sha256, &entry.token) {
                (Some(hex_hash), None) => {
                    let bytes = hex::decode(hex_hash.trim())
                        .ok()
                        .and_then(|b| <[u8; 32]>::try_from(b).ok())
                        .ok_or_else(|| {
                            format!(
                                "admin {}: token_sha256 must be 64 hex digits (sha256sum of the token)",
                                entry.id
                            )
                        })?;
                    bytes
                }
                (None, Some(token)) if token.len() >= 16 => sha256(token.as_bytes()),
                (None, Some(_)) => {
                    return Err(format!(
                        "admin {}: a token must be at least 16 characters",
                        entry.id
                    ))
                }
                _ => {
                    return Err(format!(
                        "admin {}: give exactly one of token_sha256 and token",
                        entry.id
                    ))
                }
            };
            if entry.id.trim().is_empty() {
                return Err("an admin has an empty id".to_owned());
            }
            if admins.entries.iter().any(|(_, a)| a.id == entry.id) {
                return Err(format!("admin {} is listed twice", entry.id));
            }
            if admins.entries.iter().any(|(h, _)| h == &hash) {
                return Err(format!(
                    "admin {} shares a token with another admin",
                    entry.id
                ));
            }
            let teams = if entry.teams.iter().any(|t| t == "*") {
                Teams::Every
            } else {
                Teams::Only(entry.teams)
            };
            admins.entries.push((
                hash,
                Admin {
                    id: entry.id,
                    email: entry.email,
                    role: entry.role,
                    teams,
                },
            ));
        }
        Ok(admins)
    }

    /// How many admins there are.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The admin with this id (the scheduler runs schedules as their owner).
    pub fn by_id(&self, id: &str) -> Option<&Admin> {
        self.entries.iter().map(|(_, a)| a).find(|a| a.id == id)
    }

    /// The admin holding `token`, compared in constant time against all.
    pub fn authenticate(&self, token: &str) -> Option<&Admin> {
        let presented = sha256(token.as_bytes());
        let mut found = None;
        for (hash, admin) in &self.entries {
            if bool::from(hash.ct_eq(&presented)) && found.is_none() {
                found = Some(admin);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"
[[admin]]
id = "ada"
email = "ada@example.com"
role = "primary"
teams = ["t1", "t2"]
token = "ada-token-0123456789"

[[admin]]
id = "bob"
email = "bob@example.com"
role = "user_admin"
teams = ["*"]
token_sha256 = "5e884898da28047151d0e56f8dc6292773603d0d6aabbdd62a11ef721d1542d8"
"#;

    #[test]
    fn tokens_find_their_admin_and_nothing_else() {
        let admins = Admins::parse(FILE).expect("valid");
        assert_eq!(admins.len(), 2);
        let ada = admins.authenticate("ada-token-0123456789").expect("ada");
        assert_eq!(ada.id, "ada");
        assert!(ada.teams.includes("t2") && !ada.teams.includes("t3"));
        let bob = admins.authenticate("password").expect("bob, by hash");
        assert_eq!(bob.teams, Teams::Every);
        assert!(admins.authenticate("ada-token-012345678").is_none());
        assert!(admins.authenticate("").is_none());
    }

    #[test]
    fn weak_or_ambiguous_entries_are_refused() {
        for bad in [
            "[[admin]]\nid='a'\nemail='e'\nrole='primary'\nteams=[]\ntoken='short'",
            "[[admin]]\nid='a'\nemail='e'\nrole='primary'\nteams=[]",
            "[[admin]]\nid='a'\nemail='e'\nrole='root'\nteams=[]\ntoken='0123456789abcdef'",
            "[[admin]]\nid='a'\nemail='e'\nrole='sso'\nteams=[]\ntoken_sha256='abc'",
        ] {
            assert!(Admins::parse(bad).is_err(), "{bad}");
        }
    }
}
