"""The documentation's examples run as written (the plugin page, docs/plugins.md), and its links resolve."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT

PLUGINS = ROOT / "docs" / "plugins.md"


def section_examples(heading: str) -> list[str]:
    """The python blocks of one top-level section (``# heading``) of the plugin page."""
    section = ("\n" + PLUGINS.read_text()).split(f"\n# {heading}\n", 1)[1].split("\n# ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def readme_examples() -> list[str]:
    """The python blocks of the plugin page's method section (linked from the README): the first method, then the
    rank-adaptive one."""
    blocks = section_examples("Add a method plugin")
    assert len(blocks) == 2, f"{PLUGINS} should hold two python examples of methods, has {len(blocks)}"
    return blocks


def run_example(code: str, tmp_path) -> list[str]:
    script = tmp_path / "plugin_example.py"
    script.write_text(code)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    return res.stdout.splitlines()


def test_readme_plugin_example_runs(tmp_path):
    lines = [ln for ln in run_example(readme_examples()[0], tmp_path) if "frozen_features" in ln]
    assert len(lines) == 2
    accs = [float(ln.split()[-1]) for ln in lines]
    assert all(0.3 < a <= 1.0 for a in accs)  # it trains: far above chance with one trainable layer


def test_readme_rank_adaptive_example_trains_and_prunes(tmp_path):
    """The rank-adaptive example, written only on the public toolkit, trains in a suite and its ranks shrink
    (more with the larger tolerance) from the initial 250 of LeNet5's fc1."""
    lines = [ln for ln in run_example(readme_examples()[1], tmp_path) if "column_pruning" in ln]
    assert len(lines) == 2 and "tau=0.1" in lines[0] and "tau=0.3" in lines[1]
    accs = [float(ln.split()[-1]) for ln in lines]
    ranks = [int(re.search(r"'7': \[(\d+)\]", ln).group(1)) for ln in lines]
    assert all(0.3 < a <= 1.0 for a in accs)
    assert ranks[1] < ranks[0] < 250


def test_model_and_dataset_plugin_example_trains_the_model_on_the_dataset(tmp_path):
    """The plugin page's model and dataset example: the perceptron learns the bars with and without a rank-4
    factorized first layer."""
    (code,) = section_examples("Add a model or a dataset plugin")
    lines = [ln for ln in run_example(code, tmp_path) if ln.startswith("bars/mlp/")]
    assert len(lines) == 2 and "/full/" in lines[0] and "matrix[" in lines[1] and "{'1': [4]}" in lines[1]
    assert all(float(ln.split()[-1]) > 0.9 for ln in lines)  # chance is 0.5


def test_readme_front_page_gives_the_cpu_install_the_two_commands_and_working_links():
    """The first screen: CPU-only torch before ``pip install -e .``, the quickstart and the test command (what
    .ci/run runs); every relative link of the README and of docs/ names a file that exists."""
    text = (ROOT / "README.md").read_text()
    front = text.split("\n## Commands", 1)[0]
    cpu = front.index("--index-url https://download.pytorch.org/whl/cpu")
    assert cpu < front.index("\npip install -e .\n") < front.index("harness run suites/quickstart.yaml")
    assert "python -m pytest" in front and "python -m pytest" in (ROOT / ".ci" / "run").read_text()
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    for page in pages:
        for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", page.read_text()):
            assert (page.parent / target).exists(), f"{page.name} links to {target}, which does not exist"
    linked = set(re.findall(r"\]\(docs/([^)#]+\.md)", text))
    assert linked == {p.name for p in pages[1:]}  # the README links every page of docs/
