//! The document's response links (OpenAPI `links`): from an answer that
//! carries an export's or a schedule's id to the operations on it, so a
//! client (or a stateful test client) can follow create, read, edit,
//! download and delete without guessing ids. utoipa's `#[utoipa::path]`
//! cannot write links, so they are added to the served document here.

use serde_json::{json, Map, Value};

/// The links of one answer that carries an id.
struct Links {
    /// The operation's path and method, and the answer's status.
    path: &'static str,
    method: &'static str,
    status: &'static str,
    /// The body field holding the id, also the path parameter it fills.
    field: &'static str,
    /// The operations it links to: (link name, operation id).
    targets: &'static [(&'static str, &'static str)],
}

const LINKS: &[Links] = &[
    Links {
        path: "/v1/exports",
        method: "post",
        status: "202",
        field: "export_id",
        targets: &[
            ("GetExport", "getExport"),
            ("DownloadExport", "downloadExport"),
        ],
    },
    Links {
        path: "/v1/exports/{export_id}",
        method: "get",
        status: "200",
        field: "export_id",
        targets: &[("DownloadExport", "downloadExport")],
    },
    Links {
        path: "/v1/schedules",
        method: "post",
        status: "201",
        field: "schedule_id",
        targets: &[
            ("GetSchedule", "getSchedule"),
            ("UpdateSchedule", "updateSchedule"),
            ("DeleteSchedule", "deleteSchedule"),
        ],
    },
    Links {
        path: "/v1/schedules/{schedule_id}",
        method: "get",
        status: "200",
        field: "schedule_id",
        targets: &[
            ("UpdateSchedule", "updateSchedule"),
            ("DeleteSchedule", "deleteSchedule"),
        ],
    },
    Links {
        path: "/v1/schedules/{schedule_id}",
        method: "put",
        status: "200",
        field: "schedule_id",
        targets: &[
            ("GetSchedule", "getSchedule"),
            ("DeleteSchedule", "deleteSchedule"),
        ],
    },
];

/// Adds the links to `paths` (the document's `paths`); an answer the
/// document lacks gets none (the unit tests check every link lands).
pub(super) fn add(paths: &mut Value) {
    for Links {
        path,
        method,
        status,
        field,
        targets,
    } in LINKS
    {
        let pointer = format!(
            "/{}/{method}/responses/{status}",
            path.replace('~', "~0").replace('/', "~1")
        );
        let Some(response) = paths.pointer_mut(&pointer).and_then(Value::as_object_mut) else {
            continue;
        };
        let links: Map<String, Value> = targets
            .iter()
            .map(|(name, operation_id)| {
                (
                    (*name).to_owned(),
                    json!({
                        "operationId": operation_id,
                        "parameters": { *field: format!("$response.body#/{field}") },
                        "description": format!("The `{field}` of the answer."),
                    }),
                )
            })
            .collect();
        response.insert("links".to_owned(), Value::Object(links));
    }
}
