#!/usr/bin/env python3
"""Runs SQL statements in a current ClickHouse engine (chDB, in-process).

Reads JSON from stdin: {"database": "usage", "statements": [{"name": "...", "sql": "..."}]}
and executes them in order in one session, in that database. Prints JSON to
stdout: {"version": "26.x", "results": [{"name", "ok", "rows"?, "error"?}]},
"rows" being what the statement answered, as TabSeparated text. Exits 0 even
when statements fail: the caller (a Rust test) decides.
"""
import json
import sys
import tempfile

import chdb
from chdb import session as chs


def main() -> int:
    request = json.load(sys.stdin)
    database = request.get("database", "usage")
    out = {"chdb": chdb.__version__, "results": []}
    with tempfile.TemporaryDirectory(prefix="chdb-compat-") as path:
        sess = chs.Session(path)
        out["version"] = str(sess.query("SELECT version()", "TSVRaw")).strip()
        sess.query(f"CREATE DATABASE IF NOT EXISTS {database}")
        sess.query(f"USE {database}")
        for statement in request["statements"]:
            result = {"name": statement["name"], "ok": True}
            try:
                result["rows"] = str(sess.query(statement["sql"], "TabSeparated"))
            except Exception as error:  # chdb raises its own error types
                result["ok"] = False
                result["error"] = str(error).strip()[:2000]
            out["results"].append(result)
        sess.close()
    json.dump(out, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
