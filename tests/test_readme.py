"""The README's plugin example runs as written."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT


def test_readme_plugin_example_runs(tmp_path):
    text = (ROOT / "README.md").read_text()
    section = text.split("## Add a method plugin", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    script = tmp_path / "plugin_example.py"
    script.write_text(code)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    lines = [ln for ln in res.stdout.splitlines() if "frozen_features" in ln]
    assert len(lines) == 2
    accs = [float(ln.split()[-1]) for ln in lines]
    assert all(0.3 < a <= 1.0 for a in accs)  # it trains: far above chance with one trainable layer
