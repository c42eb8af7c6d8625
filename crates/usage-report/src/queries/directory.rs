//! The statements of the directory (merges, teams, profiles, groups) and of
//! the assignments an unassign checks.

use super::{Param, Sql};

/// Accepted team merges, oldest first: `from_team_id, into_team_id`.
pub fn merges() -> Sql {
    Sql::new(
        "SELECT from_team_id, into_team_id FROM team_merges \
         GROUP BY from_team_id, into_team_id, event_id \
         ORDER BY min(occurred_at), event_id",
    )
}

/// Every team in the directory: `team_id, name, pii_visible` (latest).
pub fn teams() -> Sql {
    Sql::new(
        "SELECT team_id, argMax(name, version), argMax(pii_visible, version) \
         FROM teams GROUP BY team_id",
    )
}

/// Profiles (latest) of `users`, or of everyone: `user_id, name, email,
/// avatar_url`.
pub fn profiles(users: Option<Vec<String>>) -> Sql {
    let mut sql = Sql::new(
        "SELECT user_id, argMax(name, version), argMax(email, version), \
         argMax(avatar_url, version) FROM user_profiles",
    );
    match users {
        Some(users) if users.is_empty() => {
            sql.push(" WHERE 0");
        }
        Some(users) => {
            sql.bind(
                " WHERE user_id IN (SELECT arrayJoin(?))",
                Param::Strs(users),
            );
        }
        None => {}
    }
    sql.push(" GROUP BY user_id");
    sql
}

/// Group memberships (latest per team, user, group) of `teams`, or of
/// every team, of `users` or of everyone: `team_id, user_id, group_id,
/// group_name, member`.
pub fn memberships(teams: Option<Vec<String>>, users: Option<Vec<String>>) -> Sql {
    let mut sql = Sql::new(
        "SELECT team_id, user_id, group_id, argMax(group_name, version), argMax(member, version) \
         FROM group_memberships",
    );
    match teams {
        Some(teams) if teams.is_empty() => {
            sql.push(" WHERE 0");
        }
        Some(teams) => {
            sql.bind(
                " WHERE team_id IN (SELECT arrayJoin(?))",
                Param::Strs(teams),
            );
        }
        None => {
            sql.push(" WHERE 1");
        }
    }
    match users {
        Some(users) if users.is_empty() => {
            sql.push(" AND 0");
        }
        Some(users) => {
            sql.bind(" AND user_id IN (SELECT arrayJoin(?))", Param::Strs(users));
        }
        None => {}
    }
    sql.push(" GROUP BY team_id, user_id, group_id");
    sql
}

/// Every team id known: in the directory or holding assignments.
pub fn known_teams() -> Sql {
    Sql::new(
        "SELECT team_id FROM (SELECT team_id FROM teams GROUP BY team_id \
         UNION ALL SELECT team_id FROM assignment_state GROUP BY team_id) GROUP BY team_id",
    )
}

/// The assignments of `product` in `teams` (stored ids): `team_id,
/// user_id, access, assigned (latest), via, group_id`.
pub fn assignments_of(teams: Vec<String>, product: &str) -> Sql {
    let mut sql = Sql::new(
        "SELECT team_id, user_id, toString(access), argMax(assigned, version), \
         toString(argMax(via, version)), argMax(group_id, version) FROM assignment_state WHERE 1",
    );
    if teams.is_empty() {
        sql.push(" AND 0");
    } else {
        sql.bind(" AND team_id IN (SELECT arrayJoin(?))", Param::Strs(teams));
    }
    sql.bind_str(" AND product = ?", product)
        .push(" GROUP BY team_id, user_id, product, access");
    sql
}
