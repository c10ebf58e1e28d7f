"""A wheel built offline carries the dialogs and content and works outside the checkout."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("hatchling") is None,
    reason="hatchling is not importable, so no wheel can be built without network access "
           "(install the [test] extra)")


def run(args: list[str], cwd: Path, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, f"{args}:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(a folder holding nothing but the installed wheel, an environment that uses it)."""
    tmp = tmp_path_factory.mktemp("wheel")
    offline = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-w", str(tmp / "dist"), str(REPO_ROOT)], cwd=tmp, env=offline)
    wheels = list((tmp / "dist").glob("backbot-*.whl"))
    assert len(wheels) == 1, wheels
    with zipfile.ZipFile(wheels[0]) as wheel:
        names = set(wheel.namelist())
    assert {"bot/_data/dialogs/screening.yaml", "bot/_data/content/advice.yaml",
            "bot/_data/content/messages.yaml", "bot/_data/content/sources.yaml",
            "bot/engine.py", "bot/__main__.py"} <= names
    assert not any(name.startswith("tests/") for name in names)
    site = tmp / "site"
    run([sys.executable, "-m", "pip", "install", "--no-deps", "--target", str(site),
         str(wheels[0])], cwd=tmp, env=offline)
    env = {**os.environ, "PYTHONPATH": str(site)}
    return tmp, env


def test_installed_wheel_finds_its_data(installed: tuple[Path, dict[str, str]]) -> None:
    tmp, env = installed
    site = (tmp / "site").resolve()
    result = run([sys.executable, "-c",
                  "import bot, bot.paths; print(bot.__file__); print(bot.paths.data_root())"],
                 cwd=tmp, env=env)
    module, data_root = (Path(line) for line in result.stdout.splitlines())
    assert module.resolve().is_relative_to(site), module
    assert data_root.resolve().is_relative_to(site), data_root
    assert (data_root / "dialogs" / "screening.yaml").is_file()


def test_installed_wheel_passes_check(installed: tuple[Path, dict[str, str]]) -> None:
    tmp, env = installed
    result = run([sys.executable, "-m", "bot", "check"], cwd=tmp, env=env)
    site = str((tmp / "site").resolve())
    first = result.stdout.splitlines()[0]
    assert first.startswith(site) or first.startswith(str(tmp / "site")), first
    assert result.stdout.count("\nok   (") == 4
