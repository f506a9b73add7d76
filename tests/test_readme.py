"""The README's tour runs as written.

Every ```python block of README.md runs, in order, in one namespace, in a temporary working
directory, except:

- blocks whose first line is exactly ``# needs a GPU`` (they run only where PyTorch sees a CUDA GPU);
- the blocks listed by their first line in ``PENDING_REWRITE`` below.

Output shown in the README is checked, with the convention the README's tour states: a statement
whose (last) line ends in ``# -> TEXT`` must print exactly ``TEXT`` (one line), where ``...`` in
``TEXT`` stands for any characters, as in doctest's ELLIPSIS.
"""

from __future__ import annotations

import ast
import contextlib
import io
import re
import tokenize
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
GPU_MARK = "# needs a GPU"
EXPECT = "# -> "

# Blocks skipped, by their first line (none: every block of the tour runs).
PENDING_REWRITE: list[str] = []


def python_blocks(text: str) -> list[tuple[int, str]]:
    """``(line number of the block's first line, code)`` of every ```python block."""
    blocks, lines, start = [], text.splitlines(), None
    for number, line in enumerate(lines, 1):
        if start is None and line.strip() == "```python":
            start = number + 1
        elif start is not None and line.strip() == "```":
            blocks.append((start, "\n".join(lines[start - 1:number - 1]) + "\n"))
            start = None
    assert start is None, f"README.md: the ```python block opened at line {start - 1} is not closed"
    return blocks


def expectations(code: str) -> dict[int, str]:
    """``{line: expected output}`` from the ``# -> TEXT`` comments of ``code``."""
    found = {}
    for tok in tokenize.generate_tokens(io.StringIO(code).readline):
        if tok.type == tokenize.COMMENT and tok.string.startswith(EXPECT):
            found[tok.start[0]] = tok.string[len(EXPECT):].strip()
    return found


def matches(expected: str, printed: str) -> bool:
    pattern = ".*".join(re.escape(part) for part in expected.split("..."))
    return re.fullmatch(pattern, printed) is not None


def run_block(code: str, namespace: dict, where: str) -> None:
    """Run ``code`` statement by statement in ``namespace``, checking each ``# -> TEXT`` against
    what the statements ending on that line printed."""
    tree = ast.parse(code, filename=where)
    wanted = expectations(code)
    printed: dict[int, str] = {}
    for stmt in tree.body:
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            exec(compile(ast.Module([stmt], type_ignores=[]), where, "exec"), namespace)
        printed[stmt.end_lineno] = printed.get(stmt.end_lineno, "") + out.getvalue()
    stray = sorted(set(wanted) - set(printed))
    assert not stray, f"{where}: '# -> ' comments not at the end of a statement, block lines {stray}"
    for line, expected in sorted(wanted.items()):
        shown = printed[line]
        assert shown.endswith("\n") and "\n" not in shown[:-1] and matches(expected, shown[:-1]), (
            f"{where}, block line {line}: printed {shown!r}, the README shows {expected!r}")


def _gpu() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("XPMLP_BACKEND", raising=False)
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 3
    first_lines = [code.splitlines()[0] for _, code in blocks]
    for line in PENDING_REWRITE:
        assert line in first_lines, f"PENDING_REWRITE names {line!r}, which no block of README.md starts with"
    namespace: dict = {"__name__": "__readme__"}
    ran = 0
    for (start, code), first in zip(blocks, first_lines):
        if first in PENDING_REWRITE or (first == GPU_MARK and not _gpu()):
            continue
        run_block(code, namespace, f"README.md:{start}")
        ran += 1
    assert ran >= 3
    assert any(expectations(code) for _, code in blocks), "the tour shows no output to check"


# ------------------------------------------------------------------ the checker itself
def test_a_wrong_expectation_fails():
    with pytest.raises(AssertionError, match=r"printed '4\\n', the README shows '5'"):
        run_block("x = 2\nprint(x + 2)  # -> 5\n", {}, "t")
    with pytest.raises(AssertionError, match="printed ''"):
        run_block("x = 2  # -> 2\n", {}, "t")  # nothing printed: a bare expression shows nothing in a script
    for two_lines in ("print(1); print(2)  # -> 1\n", "for i in (1, 2):\n    print(i)  # -> 1\n"):
        with pytest.raises(AssertionError, match=r"printed '1\\n2\\n'"):
            run_block(two_lines, {}, "t")


def test_expectations_and_ellipsis():
    ns: dict = {}
    run_block("import math\nprint(math.pi)  # -> 3.14...\nprint([1,\n       2])  # -> [1, 2]\n", ns, "t")
    assert matches("0.98...", "0.9844") and not matches("0.98...", "0.9911") and not matches("0.98", "0.984")
    assert matches("(3, 5) ...", "(3, 5) [(8, 4)]") and not matches("numpy", "numpy ")
    with pytest.raises(AssertionError, match="not at the end of a statement"):
        run_block("print([1,  # -> [1, 2]\n       2])\n", {}, "t")


def test_blocks_are_found_with_their_lines():
    text = "intro\n```python\na = 1\n```\n```bash\nls\n```\n```python\n# needs a GPU\nb = 2\n```\n"
    assert python_blocks(text) == [(3, "a = 1\n"), (9, "# needs a GPU\nb = 2\n")]
