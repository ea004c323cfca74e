"""A valid Tool record for tests, with the fields a test cares about changed."""

from __future__ import annotations

from maomao.model import Tool


def make_tool(**changes: object) -> Tool:
    fields: dict[str, object] = {
        "name": "t", "author": "a", "image": "lab/tool:1", "data_repo": "/srv/d", "code_repo": "/srv/c",
        "artefact": "x",
    }
    fields.update(changes)
    return Tool(**fields)  # type: ignore[arg-type]
