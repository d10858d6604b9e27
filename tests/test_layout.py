"""The package's shape: one import root (``cosine_host``) that works whatever the current folder
holds, installed or editable; rooms that import only downward; lazy package ``__init__``s."""
from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# What a folder of an ML project often holds: its own models/ package, a stream.py, a run.py.
LOOKALIKES = {
    "models/__init__.py": "raise ImportError('the look-alike models/ package was imported')\n",
    "stream.py": "raise ImportError('the look-alike stream.py was imported')\n",
    "run.py": "raise SystemExit('the look-alike run.py was run')\n",
    "cli.py": "raise ImportError('the look-alike cli.py was imported')\n",
}

API_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import cosine_host
    from cosine_host import Engine, load_config
    cfg = load_config(overrides=["model.device=cpu", "processors=[{type: quantize, bits: 8}]"])
    engine = Engine.from_config(cfg, blocksize=256, channels=1)
    out = engine.process(np.zeros((1024, 1), np.float32))
    assert out.shape == (1024, 1), out.shape
    assert "models" not in sys.modules and "stream" not in sys.modules and "run" not in sys.modules
    print(cosine_host.__file__)
    print(cosine_host.models.__file__)
""")


def _lookalike_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    for name, text in LOOKALIKES.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)
    return folder


def _run(args, cwd, env=None):
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def installed_site(tmp_path_factory):
    """A non-editable install of this checkout (wheel, no dependencies) into its own folder."""
    tmp = tmp_path_factory.mktemp("install")
    source, wheel_dir, site = tmp / "source", tmp / "wheel", tmp / "site"
    # a copy: building writes build/ and *.egg-info/ next to pyproject.toml
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for name in ("stream", "models", "configs"):
        shutil.copytree(ROOT / name, source / name,
                        ignore=shutil.ignore_patterns("__pycache__"))
    built = _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                  "-w", str(wheel_dir), str(source)], cwd=tmp)
    assert built.returncode == 0, built.stderr
    wheel = next(wheel_dir.glob("cosine_host-*.whl"))
    done = _run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site),
                 str(wheel)], cwd=tmp)
    assert done.returncode == 0, done.stderr
    return site


def test_installed_distribution_adds_one_import_root(installed_site):
    names = {p.name for p in installed_site.iterdir()} - {"bin"}
    assert {n for n in names if not n.endswith(".dist-info")} == {"cosine_host"}
    package = installed_site / "cosine_host"
    assert (package / "models" / "processors" / "quantize.py").is_file()
    assert (package / "configs" / "default.yaml").is_file()
    assert not (package / "stream").exists() and not (installed_site / "models").exists()


def test_installed_api_works_beside_lookalikes(installed_site, tmp_path):
    folder = _lookalike_folder(tmp_path)
    done = _run([sys.executable, "-c", API_SCRIPT], cwd=folder,
                env={"PYTHONPATH": str(installed_site)})
    assert done.returncode == 0, done.stderr
    package_file, models_file = done.stdout.split()
    assert Path(package_file) == installed_site / "cosine_host" / "__init__.py"
    assert Path(models_file) == installed_site / "cosine_host" / "models" / "__init__.py"


def test_installed_presets_found_inside_the_package(installed_site, tmp_path):
    folder = _lookalike_folder(tmp_path)
    code = "from cosine_host.config.schema import CONFIG_DIR; print(CONFIG_DIR)"
    done = _run([sys.executable, "-c", code], cwd=folder, env={"PYTHONPATH": str(installed_site)})
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == installed_site / "cosine_host" / "configs"


def test_editable_install_and_console_script_beside_lookalikes(tmp_path):
    folder = _lookalike_folder(tmp_path)
    done = _run([sys.executable, "-c", API_SCRIPT], cwd=folder)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.split()[0]) == ROOT / "stream" / "__init__.py"
    script = Path(sys.executable).parent / "cosine-host"
    listed = _run([str(script), "presets"], cwd=folder)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines()[0].startswith("default ")


def test_run_py_runs_its_checkout_from_any_folder(tmp_path):
    folder = _lookalike_folder(tmp_path)
    done = _run([sys.executable, str(ROOT / "run.py"), "presets"], cwd=folder)
    assert done.returncode == 0, done.stderr
    assert "quantize-6bit" in done.stdout


# --- rooms ------------------------------------------------------------------------------------

# The rooms in layers, lowest first: a room may import the rooms below it, never one above.
# cli -> command rooms (measure, lab, live, train, offline) -> config -> engine -> models; the
# shared modules at the root (errors, files, outputs, interrupts, plotting) serve every room.
LAYERS = ("models", "engine", "config", "offline", "train", "live", "lab", "measure", "cli")
SHARED = {"errors", "files", "interrupts", "outputs", "plotting"}


def _room(path: Path) -> str | None:
    rel = path.relative_to(ROOT)
    if rel.parts[0] == "models":
        return "models"
    if rel.parts[0] == "stream" and len(rel.parts) > 2:
        return rel.parts[1]
    return None


def _imported_rooms(path: Path) -> set[str]:
    """Rooms named by ``import``/``from`` statements anywhere in the module."""
    rooms = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "cosine_host" and len(parts) > 1 and parts[1] not in SHARED:
                rooms.add(parts[1])
    return rooms


def test_rooms_import_only_downward():
    wrong = []
    for path in sorted([*ROOT.glob("stream/**/*.py"), *ROOT.glob("models/**/*.py")]):
        room = _room(path)
        if room is None:
            continue
        for other in _imported_rooms(path) - {room}:
            if LAYERS.index(other) > LAYERS.index(room):
                wrong.append(f"{path.relative_to(ROOT)} imports cosine_host.{other}")
    assert not wrong, wrong


def test_every_room_is_layered():
    rooms = {p.name for p in (ROOT / "stream").iterdir() if (p / "__init__.py").is_file()}
    assert rooms | {"models"} == set(LAYERS)


def test_models_import_nothing_but_models():
    for path in sorted(ROOT.glob("models/**/*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert not node.module.startswith("cosine_host.") or \
                    node.module.startswith("cosine_host.models"), (path, node.module)


def test_only_live_imports_sounddevice():
    for path in sorted(ROOT.glob("stream/**/*.py")):
        tree = ast.parse(path.read_text())
        names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
        if "sounddevice" in names:
            assert _room(path) == "live", path


def test_package_inits_are_lazy():
    """Importing cosine_host, every room and the batch driver loads neither torch nor numpy."""
    code = textwrap.dedent("""
        import sys
        import cosine_host, cosine_host.models, cosine_host.models.processors
        import cosine_host.cli, cosine_host.config, cosine_host.engine, cosine_host.lab
        import cosine_host.live, cosine_host.measure, cosine_host.offline, cosine_host.train
        import cosine_host.offline.batch, cosine_host.offline.plan, cosine_host.interrupts
        heavy = sorted(m for m in ("torch", "numpy", "sounddevice", "scipy") if m in sys.modules)
        print(",".join(heavy) or "none")
    """)
    done = _run([sys.executable, "-c", code], cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "none"
