"""What produced a record: package versions from their metadata, zpeft's own git commit, the hardware.

A git commit is recorded only when zpeft itself runs from a git checkout of zpeft (an
editable install); a wheel installed inside someone's repository records no commit, rather
than that repository's HEAD.
"""

from __future__ import annotations

import platform
import subprocess
from importlib.metadata import PackageNotFoundError, distribution, version
from pathlib import Path

PACKAGES = ("zpeft", "torch", "torchvision", "timm", "peft", "numpy", "astropy", "h5py")


def package_versions() -> dict[str, str | None]:
    """Installed version of each package in PACKAGES, from its metadata (None when absent)."""
    out: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def zpeft_source_dir() -> Path | None:
    """The checkout zpeft runs from when it is an editable install of a git checkout of zpeft, else None."""
    package_dir = Path(__file__).resolve().parent.parent  # the folder behind `zpeft` (bench/ in a checkout)
    root = package_dir.parent
    if not (root / ".git").exists() or not (root / "pyproject.toml").is_file():
        return None
    if 'name = "zpeft"' not in (root / "pyproject.toml").read_text():
        return None
    return root


def git_state(root: Path) -> dict[str, str | bool | None]:
    """HEAD of the repository at `root` and whether its tracked files differ from it."""
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, cwd=root)
        except (OSError, subprocess.TimeoutExpired):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no")
    return {"git_commit": commit, "git_dirty": None if status is None else bool(status)}


def hardware() -> dict[str, str | None]:
    """CPU model, and GPU model and CUDA version when torch sees a GPU."""
    import torch

    info: dict[str, str | None] = {"cpu": _cpu_model(), "gpu": None, "cuda": torch.version.cuda}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def versions() -> dict:
    """Everything a record says about what produced it."""
    source = zpeft_source_dir()
    git = git_state(source) if source is not None else {"git_commit": None, "git_dirty": None}
    installed = "editable checkout" if source is not None else _install_kind()
    return {**package_versions(), "python": platform.python_version(), "install": installed, **git, **hardware()}


def _install_kind() -> str:
    try:
        direct = distribution("zpeft").read_text("direct_url.json") or ""
    except PackageNotFoundError:
        return "not installed"
    return "editable" if '"editable": true' in direct else "installed"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()
