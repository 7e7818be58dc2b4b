"""The divergence list itself: well-formed, and docs/compat.md says the same thing."""

from __future__ import annotations

from compat_util import (
    DIVERGENCES,
    compare_http,
    json_diff,
    load_divergences,
    normalize,
    normalize_text,
)
from render_divergences import DOC, with_table


def test_docs_compat_md_lists_exactly_the_divergences_file():
    doc = DOC.read_text()
    assert doc == with_table(doc), (
        "docs/compat.md is out of date with tests/compat/divergences.toml: "
        "run `python tests/compat/render_divergences.py --write`"
    )


def test_every_divergence_has_scope_what_and_reason():
    for d in load_divergences():
        assert d.scenarios and d.what and len(d.reason) > 20, d.id


def test_normalizer_replaces_only_per_run_values():
    a = {
        "request_id": "2a52192a-5026-cf39-6685-0e1a6266141b",
        "auth": {"client_token": "s.32XflTtO8FNbMpu9OddfqKjh", "accessor": "7J7yZ8ZIOsQAjCEmbnwkhLHO"},
        "data": {"created_time": "2026-11-29T20:22:10.034485768Z", "version": 3, "ttl": 2764799,
                 "creation_time": 1795983723, "a": "plain"},
    }
    b = {
        "request_id": "f81da537-1fd4-4a50-b4d7-04c39f3b1565",
        "auth": {"client_token": "lvs.7GRZYhZF5oYzu5iLfzRMR3bw", "accessor": "3GQpzjo6gSDtyrBYuB6jgaEK"},
        "data": {"created_time": "2026-11-29T20:22:11Z", "version": 3, "ttl": 2764800,
                 "creation_time": 1795983724, "a": "plain"},
    }
    assert json_diff(normalize(a), normalize(b)) == []
    # Real values still differ after normalizing.
    b["data"]["version"] = 4
    b["data"]["a"] = "other"
    paths = [p for p, _ in json_diff(normalize(a), normalize(b))]
    assert paths == ["$.data.a", "$.data.version"]
    # An empty value is not a placeholder: "" vs a token is a difference.
    assert json_diff(normalize({"client_token": ""}), normalize({"client_token": "s.32XflTtO8FNbMpu9OddfqKjh"}))
    assert normalize_text("token_accessor    abc\nURL: GET http://127.0.0.1:8200/v1/x") == (
        "token_accessor    <accessor>\nURL: GET <addr>/v1/x"
    )


def test_unlisted_difference_is_reported_and_listed_one_is_not():
    left = compare_http("nowhere/step", (403, "application/json", {"errors": ["a"]}), (403, "application/json", {"errors": ["b"]}))
    assert left and "$.errors[0]" in left[0]
    assert compare_http("nowhere/step", (204, "application/json", None), (204, None, None)) == [
        "content-type: openbao 'application/json' vs lockana None"
    ]
    # A global entry absorbs its key anywhere.
    assert any(d.id == "envelope-mount-type" for d in DIVERGENCES)
    assert compare_http("nowhere/step", (200, "application/json", {}), (200, "application/json", {"mount_type": "kv"})) == []
