//! OpenAPI (being written).
