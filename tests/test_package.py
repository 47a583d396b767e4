"""One import package, a CLI that starts without torch, one registry mechanism, honest provenance."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import version

import pytest

import zpeft
from zpeft.registry import Registry
from zpeft.run import provenance

HEAVY = ("torch", "timm", "peft")


def _python(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_one_top_level_package_from_anywhere(tmp_path):
    ok = _python("import zpeft, zpeft.strategies, zpeft.backbones, zpeft.run, zpeft.report", tmp_path)
    assert ok.returncode == 0, ok.stderr
    for generic in ("bench", "strategies", "backbones"):
        assert _python(f"import {generic}", tmp_path).returncode != 0, f"{generic} is importable at top level"


def test_version_comes_from_package_metadata(tmp_path):
    assert zpeft.__version__ == version("zpeft")
    out = subprocess.run([sys.executable, "-m", "zpeft", "--version"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == f"zpeft {version('zpeft')}"


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"], ["report", "--help"], ["run", "--help"],
                                  ["export", "--help"], ["list", "strategies"], ["list", "backbones"],
                                  ["list", "suites"]])
def test_cli_starts_without_torch_timm_or_peft(tmp_path, argv):
    code = (f"import sys\nfrom zpeft.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "[]"


def test_parsing_a_suite_imports_no_torch(tmp_path):
    code = ("import sys\nfrom zpeft.run.suite import load_suite\nfrom zpeft.run.plan import expand\n"
            "expand(load_suite('quick'))\nprint(sorted(m for m in ('torch', 'peft') if m in sys.modules))")
    out = _python(code, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_registry_finds_by_name_and_wildcard_and_names_the_known_on_a_miss():
    things: Registry[int] = Registry("thing")
    things.register("lora")(1)
    things.add("loha", 2)
    things.add("full", 3)
    assert things.get("lora") == 1 and things["full"] == 3 and "loha" in things
    assert things.names("lo*") == ["loha", "lora"] and things.names() == ["full", "loha", "lora"]
    with pytest.raises(KeyError, match="unknown thing 'dora'; known: full, loha, lora"):
        things.get("dora")
    with pytest.raises(ValueError, match="thing 'lora' registered twice"):
        things.add("lora", 4)
    assert things.remove("loha") == 2 and things.names() == ["full", "lora"]


def test_every_plugin_kind_uses_the_one_registry():
    from zpeft.backbones import BACKBONES
    from zpeft.data.registry import DATASETS
    from zpeft.metrics import METRICS
    from zpeft.run.executors import EXECUTORS
    from zpeft.strategies import STRATEGIES
    from zpeft.training.losses import LOSSES

    for registry in (BACKBONES, STRATEGIES, DATASETS, METRICS, LOSSES, EXECUTORS):
        assert isinstance(registry, Registry) and len(registry) > 0
    assert EXECUTORS.names() == ["local", "process", "ray"]


def test_provenance_records_zpeft_commit_only_from_a_zpeft_checkout(monkeypatch):
    recorded = provenance.versions()
    assert recorded["zpeft"] == version("zpeft") and recorded["torch"] == version("torch")
    assert recorded["cpu"]
    source = provenance.zpeft_source_dir()
    if source is not None:  # an editable install of this checkout
        assert recorded["git_commit"] and len(recorded["git_commit"]) == 40
        assert isinstance(recorded["git_dirty"], bool)
    monkeypatch.setattr(provenance, "zpeft_source_dir", lambda: None)  # a wheel inside someone else's repository
    assert provenance.versions()["git_commit"] is None
