"""schemathesis hooks of the report's contract test (tests/tests/report_contract.rs).

The document states every rule a schema can (enums, formats, patterns,
bounds, one object per kind of range in a JSON body). A few rules no schema
can state: between query parameters (`from`/`to` only with `range=custom`),
against the clock (`to` not after today, a schedule's start date not before
today) or between two dates (`from` <= `to`, at most 366 days). The server
refuses those with their own documented 400 codes, `invalid_range` and
`invalid_start_date`, so a generated request that the schema allows and such
a rule forbids is answered as documented, not a contract failure.

`filter_failure` drops exactly that: a "schema-valid request rejected"
failure (positive_data_acceptance) whose answer is a 400 with one of those
codes, where the operation documents that code for 400. Any other failure
stands.

So that generated requests reach past those rules and past unknown ids (a schedule created, then
read, edited and deleted; reports of custom ranges), `map_body` and
`map_query` move dates that are well formed into the window the rules
allow: another well-formed date for a well-formed one, and `from`/`to` left
out beside a preset range in a query; half of the well-formed unassign
requests name a real direct assignment (CONTRACT_UNASSIGNABLE). A request the schema allows stays allowed and one
it forbids stays forbidden (a malformed date is never touched).
"""

import datetime
import json
import os
import re
import zlib

import schemathesis

# The stable codes of the rules no schema can state (crates/usage-report/src/error.rs).
UNSTATABLE = frozenset({"invalid_range", "invalid_start_date"})


def _resolve(document, value):
    """`value`, or what its `$ref` points to in `document`."""
    while isinstance(value, dict) and "$ref" in value:
        target = document
        for part in value["$ref"].lstrip("#/").split("/"):
            target = target.get(part.replace("~1", "/").replace("~0", "~"), {})
        value = target
    return value


def _documented_400_codes(case):
    """The error codes the operation documents for 400."""
    document = case.operation.schema.raw_schema
    operation = document["paths"][case.operation.path][case.operation.method.lower()]
    response = _resolve(document, operation.get("responses", {}).get("400", {}))
    schema = response.get("content", {}).get("application/json", {}).get("schema", {})
    codes = set()
    for part in schema.get("allOf", [schema]):
        part = _resolve(document, part)
        codes.update(part.get("properties", {}).get("error", {}).get("enum", []))
    return codes


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code != "ST202" or response.status_code != 400:
        return True
    try:
        code = response.json().get("error")
    except ValueError:
        return True
    return not (code in UNSTATABLE and code in _documented_400_codes(case))


DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")
LAST_START_DATE = datetime.date(2099, 12, 31)
MAX_CUSTOM_DAYS = 366


def _date(value):
    """`value` as a date if it is a well-formed one (the document's `format: date`)."""
    if not isinstance(value, str) or not DATE.match(value):
        return None
    try:
        return datetime.date.fromisoformat(value)
    except ValueError:
        return None


def _today():
    return datetime.datetime.now(datetime.timezone.utc).date()


def _ranged(filters, query):
    """`filters` with well-formed range dates moved where the range rules allow them;
    in a query (whose schema cannot forbid them), well-formed `from`/`to` beside a
    preset range left out. A body's schema forbids those: they stay."""
    start, end = _date(filters.get("from")), _date(filters.get("to"))
    if filters.get("range") == "custom":
        if start is not None and end is not None:
            to = _today() - datetime.timedelta(days=end.toordinal() % 400)
            days = abs(end.toordinal() - start.toordinal()) % MAX_CUSTOM_DAYS
            filters["to"] = to.isoformat()
            filters["from"] = (to - datetime.timedelta(days=days)).isoformat()
    elif query:
        for name, date in (("from", start), ("to", end)):
            if date is not None:
                del filters[name]
    return filters


@schemathesis.hook
def map_query(context, query):
    if isinstance(query, dict) and context.operation.path.startswith("/v1/report/"):
        return _ranged(dict(query), query=True)
    return query


# A real direct assignment, as an unassign body's fields (set by the test).
UNASSIGNABLE = json.loads(os.environ.get("CONTRACT_UNASSIGNABLE", "null"))
WHO = ("team_id", "user_key", "product")


@schemathesis.hook
def map_body(context, body):
    if not isinstance(body, dict):
        return body
    body = dict(body)
    if (
        context.operation.path == "/v1/assignments/unassign"
        and UNASSIGNABLE
        and all(isinstance(body.get(name), str) for name in WHO)
        and zlib.crc32(json.dumps(body, sort_keys=True).encode()) % 2 == 0
    ):
        # Half of the well-formed requests name a real direct assignment (any
        # strings are schema-valid; these are too), so some are published.
        body.update({name: UNASSIGNABLE[name] for name in WHO})
    if isinstance(body.get("filters"), dict):
        body["filters"] = _ranged(dict(body["filters"]), query=False)
    start = _date(body.get("start_date"))
    if context.operation.path.startswith("/v1/schedules") and start is not None:
        today = _today()
        if not today <= start <= LAST_START_DATE:
            span = (LAST_START_DATE - today).days + 1
            body["start_date"] = (today + datetime.timedelta(days=start.toordinal() % span)).isoformat()
    return body
