"""The examples in the docstrings and in the README run as written."""

import doctest
import pathlib
import re

import softmax_dispatch._alternatives as alternatives
import softmax_dispatch._cross_entropy as cross_entropy
import softmax_dispatch._frontend as frontend
import softmax_dispatch._gradients as gradients
import softmax_dispatch._registry as registry

ROOT = pathlib.Path(__file__).resolve().parents[1]


def test_docstring_examples():
    for module in (frontend, gradients, alternatives, cross_entropy, registry):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


def test_readme_example_runs():
    readme = (ROOT / "README.md").read_text()
    for block in re.findall(r"```python\n(.*?)```", readme, re.S):
        exec(compile(block, "README.md", "exec"), {})
