"""Write a notebook in the house layout from a list of cells (a dev helper, not part of the package).

    python tools/new_notebook.py OUT.ipynb < cells.py

The input is a Python-like file whose cells are separated by lines `# %% [markdown]` / `# %%` (the jupytext
percent format, which we parse by hand here to avoid adding jupytext as a dependency). The second cell is tagged
`parameters`. Outputs are empty.
"""

import sys

import nbformat


def main(out: str, text: str) -> None:
    cells, kind, buf = [], None, []

    def flush():
        if kind is not None:
            src = "\n".join(buf).strip("\n")
            cells.append(nbformat.v4.new_markdown_cell(src) if kind == "md" else nbformat.v4.new_code_cell(src))

    for line in text.splitlines():
        if line.startswith("# %% [markdown]"):
            flush(); kind, buf = "md", []
        elif line.startswith("# %%"):
            flush(); kind, buf = "code", []
        elif kind == "md":
            buf.append(line[2:] if line.startswith("# ") else line.lstrip("#"))
        else:
            buf.append(line)
    flush()
    code = [c for c in cells if c.cell_type == "code"]
    code[0].metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "hlrp", "display_name": "hlrp", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nbformat.write(nb, out)


if __name__ == "__main__":
    main(sys.argv[1], sys.stdin.read())
