"""Installing glipcli as users do: inference without torch, extras named when missing, the model in the wheel."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from glipcli.cli import app
from glipcli.extras import EXTRA_MODULES

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
TORCH_WORLD = set(EXTRA_MODULES["export"])  # none of it may load for inference


def _extra_requirements(extras: dict[str, list[str]], name: str) -> set[str]:
    """Distribution names an extra pulls, self-references (``glipcli[export]``) followed."""
    names: set[str] = set()
    for requirement in extras[name]:
        dist = requirement.split(";")[0].split("[")[0]
        for sign in "<>=!~ ":
            dist = dist.split(sign)[0]
        if dist == "glipcli":
            for inner in requirement.split("[")[1].split("]")[0].split(","):
                names |= _extra_requirements(extras, inner.strip())
        else:
            names.add(dist)
    return names


def test_extra_modules_are_the_extras_of_pyproject() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for extra, modules in EXTRA_MODULES.items():
        wanted = {name.lower().replace("-", "_") for name in _extra_requirements(extras, extra)}
        assert wanted == set(modules), extra
    core = {requirement.split(">")[0].split(";")[0].replace("-", "_") for requirement in project["dependencies"]}
    assert core.isdisjoint(TORCH_WORLD)
    dev = _extra_requirements(extras, "dev")
    assert all(_extra_requirements(extras, extra) <= dev for extra in extras if extra != "dev")


_INFERENCE = """
import json, shutil, sys
from pathlib import Path
from glipcli.cli import app

tmp, examples = Path(sys.argv[1]), Path(sys.argv[2])
codes = {}
def run(*args):
    try:
        app([*map(str, args), "--quiet"] if args[0] != "info" else list(args), standalone_mode=True)
    except SystemExit as exc:
        codes[args[0]] = exc.code
run("detect", examples / "images" / "000004.png", "red heart. blue circle")
run("label", examples / "images", "--prompt-file", examples / "classes.txt", "--out", tmp / "labels.json")
run("eval", examples / "annotations.json", "--json", tmp / "scores.json")
run("info")
loaded = sorted(name for name in sys.modules if name.split(".")[0] in {WORLD})
(tmp / "result.json").write_text(json.dumps({"codes": codes, "loaded": loaded}))
"""


def test_inference_commands_import_no_torch(tmp_path: Path) -> None:
    script = _INFERENCE.replace("{WORLD}", repr(TORCH_WORLD))
    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path), str(EXAMPLES)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["codes"] == {"detect": 0, "label": 0, "eval": 0, "info": 0}, done.stderr
    assert result["loaded"] == []


@pytest.mark.parametrize(
    ("args", "extra"),
    [
        (["export", "--config", "glip-t"], "export"),
        (["train", "--out", "runs/x"], "train"),
        (["tune", "--data", "gt.json", "--weights", "model.pth", "--out", "tuned"], "train"),
    ],
)
def test_a_missing_extra_is_one_line(args: list[str], extra: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # find_spec: not installed
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1 and result.exc_info[0] is SystemExit, result.output
    assert result.stderr == f'error: glip {args[0]} needs the {extra} extra: pip install "glipcli[{extra}]"\n'


def _source_tree(target: Path) -> Path:
    """What a build of this working tree sees (the package, the embedded model, the build files)."""
    paths = ["glipcli", "exported", "setup.py", "pyproject.toml", "MANIFEST.in", "README.md"]
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "--", *paths],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        if (REPO / name).is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, target / name)
    return target


@pytest.mark.slow
def test_the_wheel_carries_the_model_and_detects_without_extras(tmp_path: Path) -> None:
    """pip install of the built wheel (no extras, downloads the core dependencies it must), then
    `glip detect` with the embedded model from a folder outside the repository; takes a minute or two."""
    source = _source_tree(tmp_path / "src")
    dist = tmp_path / "dist"
    pip_env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "--no-build-isolation", "-w", str(dist), "-q"],
        check=True,
        env=pip_env,
        timeout=300,
    )
    (wheel,) = dist.glob("glipcli-*.whl")
    assert wheel.stat().st_size < 40e6
    bundle = sorted(p.name for p in (REPO / "exported" / "glip-nano").iterdir())
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert sorted(n.rsplit("/", 1)[1] for n in names if "glip-nano/" in n) == bundle  # each file once
    assert all(n.startswith("glipcli/embedded/glip-nano/") for n in names if "glip-nano/" in n)

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    bin_dir = env_dir / "bin"
    subprocess.run([bin_dir / "pip", "install", "-q", wheel], check=True, env=pip_env, timeout=900)
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(EXAMPLES / "images" / "000004.png", outside / "img.png")
    # COLUMNS: rich wraps glip info's long paths at 80 columns (with padding), wherever pytest's tmp_path lies
    run_env = {**pip_env, "HOME": str(tmp_path), "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "500"}

    def glip(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["glip", *args], cwd=outside, env=run_env, capture_output=True, text=True, timeout=300)

    detected = glip("detect", "img.png", "red heart. blue circle", "--json", "-")
    assert detected.returncode == 0, detected.stderr
    assert json.loads(detected.stdout)["detections"]
    info = glip("info")
    assert f"{env_dir}" in info.stdout.replace("\n", "") and "glip-nano" in info.stdout, info.stdout
    refused = glip("export", "--config", "glip-t")
    assert refused.returncode == 1
    assert refused.stderr == 'error: glip export needs the export extra: pip install "glipcli[export]"\n'
    torch = subprocess.run([bin_dir / "python", "-c", "import torch"], capture_output=True, cwd=outside)
    assert torch.returncode != 0
