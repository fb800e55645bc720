"""The profile's JSON Schema (issue 9): one source of truth for the loader, editors and the README.

The committed schema and the README's reference table must match what the models
generate; every shipped profile names the schema in its ``#:schema`` line and
validates against it with the ``jsonschema`` package; the schema is as strict as
the loader about keys (``additionalProperties: false`` on every table).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from typer.testing import CliRunner

from smtpbench import schema_doc
from tests.hostile import make_app

PROFILES = Path(__file__).resolve().parent.parent / "profiles"
SHIPPED = sorted(PROFILES.glob("*.toml"))


@pytest.fixture(scope="module")
def validator() -> jsonschema.Draft202012Validator:
    schema = schema_doc.profile_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    return jsonschema.Draft202012Validator(schema)


def test_committed_schema_and_readme_table_are_current() -> None:
    assert json.loads(schema_doc.SCHEMA_FILE.read_text("utf-8")) == schema_doc.profile_schema()
    assert schema_doc.main(["--check"]) == 0, "run: python -m smtpbench.schema_doc"


def test_schema_command_prints_the_schema() -> None:
    result = CliRunner().invoke(make_app(), ["schema"])
    assert result.exit_code == 0, result.output
    assert result.stdout == schema_doc.SCHEMA_FILE.read_text("utf-8")


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_shipped_profile_names_the_schema_and_validates(path: Path, validator: Any) -> None:
    first = path.read_text("utf-8").splitlines()[0]
    assert first.startswith("#:schema ./"), first
    assert (path.parent / first.removeprefix("#:schema ")).resolve() == schema_doc.SCHEMA_FILE
    errors = [e.message for e in validator.iter_errors(tomllib.loads(path.read_text("utf-8")))]
    assert errors == []


def test_every_table_is_closed() -> None:
    open_tables: list[str] = []

    def walk(node: Any, where: str) -> None:
        if isinstance(node, dict):
            # A map of free keys is closed by naming the keys it takes (propertyNames), as [thresholds] does.
            closed = node.get("additionalProperties") is False or "enum" in node.get("propertyNames", {})
            if node.get("type") == "object" and not closed:
                open_tables.append(where)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(schema_doc.profile_schema(), "#")
    assert open_tables == []


@pytest.mark.parametrize(
    ("data", "word"),
    [
        ({"workloads": {}}, "workloads"),
        ({"workload": {"sesions": 3}}, "sesions"),
        ({"target": {"auth": {"username": "u", "password": "x"}}}, "password"),
        ({"message": {"headers": {"bad name": "x"}}}, "bad name"),
        ({"message": {"size": {"distribution": "uniform", "min": 1, "max": 2, "median": 3}}}, "size"),
        ({"target": {"port": 70000}}, "70000"),
        ({"workload": {"duration": "soon"}}, "soon"),
        ({"smtp": {"pipelining": "maybe"}}, "maybe"),
        ({"conform": {"timout": 3}}, "timout"),
    ],
)
def test_schema_refuses_what_the_loader_refuses(validator: Any, data: dict[str, Any], word: str) -> None:
    errors = list(validator.iter_errors(data))
    assert errors and any(word in e.message or word in json.dumps(list(e.path)) for e in errors), errors


def test_help_does_not_import_pydantic() -> None:
    # Start-up budget (issue 9): the schema library is imported by the commands that need it, not by --help.
    code = (
        "import sys\n"
        "from smtpbench import cli\n"
        "sys.argv = ['smtpbench', '--help']\n"
        "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
        "print('pydantic' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True).stdout
    assert out.strip().splitlines()[-1] == "False"
