"""A method from a separate installed package comes in through the ``harness.methods`` entry point."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import run_cli, tiny_suite
from tests.test_readme import readme_examples

PLUGIN = '''
"""A third-party method: full training with every layer's weights frozen except the last two."""
from pydantic import BaseModel, ConfigDict

from harness import Method


class HeadOnly(Method):
    """Train only the last N parameter tensors (third-party test plugin)."""

    class Params(BaseModel):
        model_config = ConfigDict(extra="forbid")
        trainable: int = 2

    def prepare(self, model, generator):
        params = list(model.parameters())
        for p in params[: len(params) - self.params.trainable]:
            p.requires_grad_(False)
        return model
'''


def install_plugin(tmp_path, package: str, code: str, entry_point: str, group: str = "harness.methods") -> dict:
    """Install ``code`` as the outside package ``package`` registering ``entry_point`` (``name = "mod:Class"``;
    several: one a line, or a dict group -> lines) in the entry-point ``group``; returns the environment that
    puts it on the path (pip installs it into a folder of its own, named by PYTHONPATH)."""
    src = tmp_path / "src"
    (src / package).mkdir(parents=True)
    (src / package / "__init__.py").write_text(code)
    groups = entry_point if isinstance(entry_point, dict) else {group: entry_point}
    sections = "\n".join(f'[project.entry-points."{g}"]\n{lines}' for g, lines in groups.items())
    (src / "pyproject.toml").write_text(
        textwrap.dedent(f"""
        [build-system]
        requires = ["setuptools>=61"]
        build-backend = "setuptools.build_meta"
        [project]
        name = "{package.replace("_", "-")}"
        version = "0.1"
        [tool.setuptools]
        packages = ["{package}"]
    """)
        + sections
        + "\n"
    )
    site = tmp_path / "site"
    pip = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--target",
            str(site),
            str(src),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert pip.returncode == 0, pip.stderr
    return {"PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])}


def test_entry_point_plugin_is_listed_and_runs(tmp_path, write_suite):
    env = install_plugin(tmp_path, "headonly_plugin", PLUGIN, 'head_only = "headonly_plugin:HeadOnly"')

    listed = run_cli("list", "methods", env=env)
    assert "head_only" in listed.stdout and "Train only the last N parameter tensors" in listed.stdout

    path = write_suite(tiny_suite(methods=[{"name": "head_only", "params": {"trainable": [2, 4]}}]))
    res = run_cli("run", str(path), "--results", str(tmp_path / "res"), env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("done   ") == 2 and "head_only[trainable=4]" in res.stdout

    bad = write_suite(tiny_suite(methods=[{"name": "head_only", "params": {"trainabel": 2}}]), "bad.yaml")
    res = run_cli("run", str(bad), "--results", str(tmp_path / "res2"), env=env)
    assert res.returncode == 2 and "did you mean 'trainable'" in res.stderr

    # without the package on the path the method is unknown, and the message says so
    res = run_cli("run", str(path), "--results", str(tmp_path / "res3"))
    assert res.returncode == 2 and "unknown method 'head_only'" in res.stderr


def test_outside_rank_adaptive_package_on_the_public_toolkit_trains_in_a_suite(tmp_path, write_suite):
    """The plugin page's rank-adaptive method, built only on the toolkit ``harness`` exports, as an outside package."""
    code = readme_examples()[1].split('if __name__ == "__main__":', 1)[0]
    assert "harness_methods" not in code and "harness." not in code.replace("harness.toolkit", "")
    env = install_plugin(tmp_path, "colprune_plugin", code, 'column_pruning = "colprune_plugin:ColumnPruning"')
    path = write_suite(tiny_suite(methods=[{"name": "column_pruning", "params": {"tau": [0.1, 0.3], "every": 5}}]))
    res = run_cli("run", str(path), "--results", str(tmp_path / "res"), env=env)
    assert res.returncode == 0, res.stderr
    assert res.stdout.count("done   ") == 2 and "column_pruning[" in res.stdout and "tau=0.3" in res.stdout
