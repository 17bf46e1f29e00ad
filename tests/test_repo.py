"""The repository's promises: the README's commands and CI stay in step."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.split("#", 1)[0].strip() for line in block.strip().splitlines()]


def test_readme_opens_with_two_commands():
    head = (ROOT / "README.md").read_text().splitlines()[:6]
    assert any("rooflab run" in line for line in head)
    assert any("pytest" in line for line in head)
    assert len(_readme_commands()) == 2


def test_ci_runs_the_readme_test_command():
    test_cmd = _readme_commands()[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert test_cmd in ci.splitlines()
    assert "torch==2.13.0" in ci


def test_workflows_are_valid_yaml():
    yaml = pytest.importorskip("yaml")
    for wf in (ROOT / ".github" / "workflows").glob("*.yml"):
        doc = yaml.safe_load(wf.read_text())
        assert doc.get("jobs"), wf


def test_gpu_session_script_parses_and_refuses_a_bad_name(tmp_path):
    import subprocess

    script = ROOT / ".ci" / "gpu-session"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    for bad in ("", "../etc", "H100 SXM"):
        r = subprocess.run(["bash", str(script), bad], capture_output=True, text=True, cwd=ROOT,
                           env={"PATH": "/usr/bin:/bin", "OUT": str(tmp_path)})
        assert r.returncode != 0 and "NAME" in r.stderr, (bad, r.stderr)
        assert not any(tmp_path.iterdir())  # refused before it wrote anything


def test_ci_pins_versions_and_lints_and_type_checks():
    from _pins import pinned

    ci = (ROOT / ".ci" / "run").read_text()
    assert "PIP_CONSTRAINT" in ci and "constraints.txt" in ci
    assert "ruff check bench kernels tests" in ci and "mypy" in ci
    # everything the package, the tests and the checks install is pinned
    for dist in ("torch", "triton", "pydantic", "typer", "rich", "pandas", "matplotlib", "numpy", "nvidia-ml-py",
                 "pytest", "pytest-benchmark", "hypothesis", "ruff", "mypy"):
        assert pinned(dist), dist


def test_nothing_committed_names_a_generator_version():
    """A generated file that stamps its generator's version goes stale with every release of it."""
    import re

    schema = (ROOT / "profiles" / "schema.json").read_text()
    assert not re.search(r"pydantic \d", schema)
