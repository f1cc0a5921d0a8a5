"""The OpenAPI document at /api/openapi.json is a valid OpenAPI 3.0.3 document (checked by
openapi-spec-validator, not by our code), with a unique operationId on every operation and only
security schemes it defines."""

from __future__ import annotations

import json

from openapi_spec_validator import OpenAPIV30SpecValidator

from dialer.api.openapi import MODULES, OPTIONAL_MODULES, build_document, load_modules

METHODS = {"get", "put", "post", "delete", "patch", "head", "options"}


def document() -> dict[str, object]:
    # Through JSON, as clients read it.
    return json.loads(json.dumps(build_document(load_modules(MODULES, OPTIONAL_MODULES))))


def operations(doc: dict[str, object]) -> list[tuple[str, str, dict[str, object]]]:
    paths = doc["paths"]
    assert isinstance(paths, dict)
    return [
        (method, path, op)
        for path, item in paths.items()
        for method, op in item.items()
        if method in METHODS
    ]


def test_the_document_passes_the_openapi_3_0_validator() -> None:
    doc = document()
    assert doc["openapi"] == "3.0.3"
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message[:200]}"
        for e in OpenAPIV30SpecValidator(doc).iter_errors()
    ]
    assert errors == []


def test_every_operation_has_a_unique_operation_id() -> None:
    ops = operations(document())
    assert len(ops) > 20
    ids = [op.get("operationId") for _m, _p, op in ops]
    assert all(isinstance(i, str) and i for i in ids), [(m, p) for m, p, o in ops]
    assert len(set(ids)) == len(ids)
    by_route = {(m, p): op["operationId"] for m, p, op in ops}
    assert by_route[("post", "/api/campaigns/{campaign_id}/start")] == (
        "postCampaignsByCampaignIdStart"
    )


def test_security_requirements_name_defined_schemes() -> None:
    doc = document()
    components = doc["components"]
    assert isinstance(components, dict)
    defined = set(components["securitySchemes"])
    used = {name for req in doc.get("security", []) for name in req}  # type: ignore[attr-defined]
    for _m, _p, op in operations(doc):
        used |= {name for req in op.get("security", []) for name in req}  # type: ignore[attr-defined]
    assert used and used <= defined


def test_no_type_lists_in_a_3_0_document() -> None:
    # OpenAPI 3.0 schemas take one type; null goes through `nullable: true`.
    text = json.dumps(document())
    assert '"type": [' not in text
