"""The CRD: crds/ is what crd.py renders, every field is described, and CEL rules are well-formed enough to load."""

from pathlib import Path

import yaml

from modelplane_operator.crd import CRD_FILES, model_crd, render_all

CRDS = Path(__file__).resolve().parents[2] / "crds"


def test_crds_folder_matches_source():
    for name, text in render_all().items():
        assert (CRDS / name).read_text() == text, f"crds/{name} is stale: run `make crds`"


def walk(schema, path="spec"):
    yield path, schema
    for name, prop in (schema.get("properties") or {}).items():
        yield from walk(prop, f"{path}.{name}")
    if "items" in schema:
        yield from walk(schema["items"], f"{path}[]")


def test_every_field_has_a_description():
    for make in CRD_FILES.values():
        root = make()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        missing = [p for p, s in walk(root["properties"]["spec"]) if not s.get("description")]
        missing += [p for p, s in walk(root["properties"]["status"], "status") if not s.get("description")]
        assert missing == [], make.__name__


def test_printer_columns_scale_subresource_short_name():
    crd = model_crd()
    version = crd["spec"]["versions"][0]
    assert [c["name"] for c in version["additionalPrinterColumns"]] == [
        "Served", "GPUs", "Ready", "Phase", "Endpoint", "Age"]
    assert version["subresources"]["scale"]["specReplicasPath"] == ".spec.replicas"
    assert "mdl" in crd["spec"]["names"]["shortNames"]
    assert yaml.safe_load(yaml.safe_dump(crd)) == crd
