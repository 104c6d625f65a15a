"""The YAML writer: what it writes reads back as exactly what it was given."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from cfactor.deploy.emit import dump, dump_all

scalars = st.none() | st.booleans() | st.integers() | st.text()
values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(st.dictionaries(st.text(), values, max_size=6))
def test_what_is_written_reads_back_the_same(document: dict[str, Any]) -> None:
    assert yaml.safe_load(dump(document)) == (document or None)


@pytest.mark.parametrize("text", ["no", "yes", "on", "null", "~", "1.10", "0755", "1e3", "- x"])
def test_strings_that_look_like_other_things_stay_strings(text: str) -> None:
    assert yaml.safe_load(dump({text: text})) == {text: text}


def test_kubernetes_style_keys_are_written_plain() -> None:
    assert dump({"app.kubernetes.io/name": "x"}) == 'app.kubernetes.io/name: "x"\n'


def test_several_documents_read_back_in_order() -> None:
    documents: list[dict[str, Any]] = [
        {"kind": "Service"},
        {"kind": "Deployment", "spec": {"replicas": 3}},
    ]
    assert list(yaml.safe_load_all(dump_all(documents))) == documents


@pytest.mark.parametrize("bad", [{1: "x"}, {"x": 1.5}, {"x": {1, 2}}, {"x": b"bytes"}])
def test_what_it_cannot_write_is_a_type_error(bad: dict[Any, Any]) -> None:
    with pytest.raises(TypeError):
        dump(bad)


@pytest.mark.parametrize("length", [999, 1001, 3000])
def test_long_keys_read_back(length: int) -> None:
    document = {"k" * length: {"nested": [1]}, '"' * length: None}
    assert yaml.safe_load(dump(document)) == document
