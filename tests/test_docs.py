"""The docs name the tests that prove each invariant: every test they name exists, where they say."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# `accounts/test_services.py::test_name`, or `…::test_name` for the file named just before.
REFERENCE = re.compile(r"`((?:[\w/]+/)?test_\w+\.py|…)::(\w+)`")


def references():
    for doc in DOCS:
        path = None
        for match in REFERENCE.finditer(doc.read_text()):
            path = path if match[1] == "…" else match[1]
            assert path is not None, f"{doc.name}: `…::{match[2]}` follows no named file"
            yield pytest.param(path, match[2], id=f"{doc.name}:{match[2]}")


@pytest.mark.parametrize("path, name", list(references()))
def test_every_test_the_docs_name_exists(path, name):
    source = ROOT / "tests" / path
    assert source.is_file(), f"no tests/{path}"
    assert re.search(rf"^\s*(?:async )?def {name}\(", source.read_text(), re.MULTILINE), f"no {name} in tests/{path}"
