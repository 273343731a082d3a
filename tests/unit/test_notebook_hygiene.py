"""Every committed notebook follows the house layout (WORKBENCH.md sections 3, 4, 10).

Golden notebooks under tests/notebooks/ keep their outputs on purpose and are exempt from the output check.
"""

import ast
import json
from pathlib import Path

import pytest

from hlrp_core.paths import NOTEBOOKS_DIR

NOTEBOOKS = sorted(NOTEBOOKS_DIR.rglob("*.ipynb"))
BATCH_NOTEBOOKS = [p for p in NOTEBOOKS if "explore" not in p.parts and ".ipynb_checkpoints" not in p.parts]
REQUIRED_PARAMS = {"experiment", "overrides", "rung_overrides", "seed", "run_dir", "smoke"}


def _cells(path: Path):
    return json.loads(path.read_text())["cells"]


def _ids(paths):
    return [str(p.relative_to(NOTEBOOKS_DIR)) for p in paths]


def test_there_are_notebooks():
    assert BATCH_NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_committed_without_outputs(path):
    dirty = [i for i, c in enumerate(_cells(path)) if c["cell_type"] == "code" and (c.get("outputs") or
                                                                                   c.get("execution_count"))]
    assert not dirty, f"{path.name}: cells {dirty} carry outputs; strip them (executed copies belong in outputs/)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=_ids(NOTEBOOKS))
def test_title_cell_and_no_definitions(path):
    cells = _cells(path)
    title = "".join(cells[0]["source"])
    assert cells[0]["cell_type"] == "markdown" and title.startswith("# ")
    if path in BATCH_NOTEBOOKS:
        assert "COMMAND" in title and "RUNTIME" in title, f"{path.name}: title cell needs COMMAND and RUNTIME lines"
    for c in cells:
        if c["cell_type"] != "code":
            continue
        tree = ast.parse("".join(l for l in c["source"] if not l.lstrip().startswith(("%", "!"))))
        defs = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))]
        assert not defs, f"{path.name}: no def/class in notebooks; move it into hlrp_core"


@pytest.mark.parametrize("path", BATCH_NOTEBOOKS, ids=_ids(BATCH_NOTEBOOKS))
def test_parameters_cell_is_literals_papermill_can_read(path):
    import papermill

    cells = [c for c in _cells(path) if c["cell_type"] == "code"]
    assert "parameters" in cells[0].get("metadata", {}).get("tags", []), "first code cell must be tagged parameters"
    tree = ast.parse("".join(cells[0]["source"]))
    for node in tree.body:
        assert isinstance(node, (ast.AnnAssign, ast.Assign)), f"{path.name}: only assignments in the parameters cell"
        ast.literal_eval(node.value)  # raises on expressions / derived values
    found = set(papermill.inspect_notebook(str(path)))
    assert REQUIRED_PARAMS <= found, f"{path.name}: papermill sees {sorted(found)} (a '=' in a comment hides a line)"
