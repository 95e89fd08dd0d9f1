"""Swagger handling: x-nullable fields accept null, every other null is a violation."""

from __future__ import annotations

import pytest

from conformance.schema import EngineSchema, SchemaNotFound, convert, find_swagger


@pytest.fixture(scope="module")
def schema() -> EngineSchema:
    try:
        return EngineSchema(find_swagger())
    except SchemaNotFound as exc:
        pytest.skip(str(exc))


def test_convert_wraps_only_nullable() -> None:
    out = convert({"type": "object", "properties": {
        "a": {"type": "string", "x-nullable": True}, "b": {"type": "string"}}})
    assert out["properties"]["a"] == {"anyOf": [{"type": "null"}, {"type": "string"}]}
    assert out["properties"]["b"] == {"type": "string"}


def test_convert_nullable_ref_keeps_ref() -> None:
    out = convert({"$ref": "#/definitions/X", "x-nullable": True})
    assert out == {"anyOf": [{"type": "null"}, {"$ref": "#/definitions/X"}]}


def test_match_prefers_literal_paths(schema: EngineSchema) -> None:
    assert schema.match("GET", "/images/json").operation_id == "ImageList"
    assert schema.match("GET", "/images/localhost:5000/a/b:1/json").operation_id == "ImageInspect"
    assert schema.match("POST", "/containers/create").operation_id == "ContainerCreate"
    assert schema.match("GET", "/containers/abc/json").operation_id == "ContainerInspect"
    assert schema.match("GET", "/nope") is None


def test_response_keys_are_strings(schema: EngineSchema) -> None:
    op = schema.match("GET", "/version")
    assert schema.has_schema(op, 200)


def test_null_in_nullable_field_is_valid(schema: EngineSchema) -> None:
    # ContainerState.Health is x-nullable in the v1.41 swagger.
    op = schema.match("GET", "/containers/x/json")
    assert not [v for v in schema.validate(op, 200, {"State": {"Health": None}}) if "Health" in v.path]


def test_null_elsewhere_is_a_violation(schema: EngineSchema) -> None:
    op = schema.match("GET", "/info")
    violations = schema.validate(op, 200, {"Warnings": None})
    assert [v.path for v in violations] == ["$.Warnings"] and violations[0].instance_is_null


def test_error_response_schema(schema: EngineSchema) -> None:
    op = schema.match("GET", "/containers/x/json")
    assert schema.validate(op, 404, {"message": "No such container: x"}) == []
    assert schema.validate(op, 404, {"message": 5})


def test_df_containers_erratum(schema: EngineSchema) -> None:
    """/system/df lists container summaries (objects); the v1.41 file says arrays of arrays (an erratum)."""
    op = next(o for o in schema.operations if o.operation_id == "SystemDataUsage")
    summary = {"Id": "a" * 64, "Names": ["/x"], "Image": "i", "ImageID": "sha256:" + "b" * 64, "Command": "true",
               "Created": 1, "Ports": [], "Labels": {}, "State": "created", "Status": "Created",
               "HostConfig": {"NetworkMode": "default"}, "NetworkSettings": {"Networks": {}}, "Mounts": []}
    body = {"LayersSize": 0, "Images": [], "Containers": [summary], "Volumes": [], "BuildCache": []}
    assert list(schema.validate(op, 200, body)) == []
    assert list(schema.validate(op, 200, {**body, "Containers": [[summary]]})), "an array of arrays must now fail"
