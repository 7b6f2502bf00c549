"""Install: every module the programs import is declared in setup.py, in the right place, and a
missing optional package stops a program at start-up with its ``pip install`` line.

The independent facts: ``setup.py`` as written (read with ``ast``, not imported), Python's list
of standard-library modules (``sys.stdlib_module_names``), and the installed packages' own
metadata (``importlib.metadata.packages_distributions``: which distribution provides which
import name, e.g. ``cv2`` <- ``opencv-python``).
"""
import ast
import importlib.metadata
import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

PACKAGES = ("official", "data", "flags", "models")


def _setup_requirements():
    """``install_requires`` and ``extras_require`` of setup.py, read as literals."""
    tree = ast.parse((REPO_ROOT / "setup.py").read_text())
    call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call)
                and getattr(n.func, "id", None) == "setup")
    kw = {k.arg: k.value for k in call.keywords}
    core = ast.literal_eval(kw["install_requires"])
    extras = ast.literal_eval(kw["extras_require"])
    return core, extras


def _dist_name(requirement: str) -> str:
    """``'jax[cpu]>=0.4'`` -> ``'jax'`` (normalized as PEP 503 does)."""
    name = re.split(r"[\[<>=!~; ]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def _imports():
    """(module file, top-level import name, at module level?) for every absolute import in
    the four packages. Module level = not inside a function (a class body or a try at module
    level still runs on import)."""
    found = []
    for package in PACKAGES:
        for path in sorted((REPO_ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(), filename=str(path))
            in_function = set()
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    for child in ast.walk(node):
                        in_function.add(id(child))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.append((path.relative_to(REPO_ROOT), name.split(".")[0],
                                  id(node) not in in_function))
    return found


def _third_party(imports):
    std = set(sys.stdlib_module_names) | {"__future__"}
    return [(f, m, top) for f, m, top in imports if m not in std and m not in PACKAGES]


def test_every_imported_module_is_declared_where_it_is_needed():
    core, extras = _setup_requirements()
    core_dists = {_dist_name(r) for r in core}
    extra_dists = {e: {_dist_name(r) for r in reqs} for e, reqs in extras.items()}
    provides = importlib.metadata.packages_distributions()
    problems = []
    for file, module, top_level in _third_party(_imports()):
        dists = {_dist_name(d) for d in provides.get(module, [])}
        if not dists:
            problems.append(f"{file}: imports {module!r}, which no installed distribution "
                            "provides (install the test extras, or declare it)")
            continue
        if dists & core_dists:
            continue
        if top_level:
            problems.append(f"{file}: imports {module!r} at module level, but its "
                            f"distribution {sorted(dists)} is not in install_requires")
            continue
        declared_in = sorted(e for e, d in extra_dists.items() if dists & d and e != "test")
        if not declared_in:
            problems.append(f"{file}: imports {module!r} (from {sorted(dists)}), declared in "
                            "no extra")
    assert not problems, "\n".join(problems)


def test_optional_modules_name_an_extra_that_installs_them():
    """official.extras tells users 'pip install assemble-cnn[EXTRA]' for each optional import;
    EXTRA must exist in setup.py and contain the distribution that provides the module."""
    from data import corruptions
    from official import extras as extras_lib
    core, extras = _setup_requirements()
    provides = importlib.metadata.packages_distributions()
    core_dists = {_dist_name(r) for r in core}
    for module, (extra, _) in extras_lib.OPTIONAL.items():
        assert extra in extras, f"official.extras names extra {extra!r} for {module}; setup.py has none"
        dists = {_dist_name(d) for d in provides.get(module, [])}
        if not dists:  # not installed here (tensorboard is in no test extra): the name only
            dists = {_dist_name(module)}
        assert dists & {_dist_name(r) for r in extras[extra]}, (module, extra, dists)
        assert not dists & core_dists, f"{module} is core; it needs no start-up check"
    # Every lazily imported third-party module that is not core has a start-up entry.
    lazy = {m for _, m, top in _third_party(_imports()) if not top}
    for module in lazy:
        dists = {_dist_name(d) for d in provides.get(module, [])}
        if dists and not dists & core_dists:
            assert module in extras_lib.OPTIONAL, f"{module} is optional but not in official.extras"
    hint_extra = re.search(r"\[(\w+)\]", corruptions.INSTALL_HINT).group(1)
    assert hint_extra == extras_lib.OPTIONAL["imagecorruptions"][0]


def _blocked_env(tmp_path, modules):
    """Environment whose Python cannot import ``modules`` (a sitecustomize puts None in
    sys.modules, which makes ``import`` raise ImportError)."""
    site = tmp_path / "blocked_site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO_ROOT)])
    return env


def _run(args, env):
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=300)


def test_evaluate_reports_missing_packages_at_start_up(tmp_path):
    """Without matplotlib and imagecorruptions, official.evaluate stops before loading anything
    (the model directory does not even exist) and prints both pip lines; with --no_plots and no
    --corruptions it needs neither, and gets as far as the missing model directory."""
    env = _blocked_env(tmp_path, ["matplotlib", "imagecorruptions"])
    missing_dir = tmp_path / "no_such_run"
    proc = _run(["official.evaluate", f"--model_dir={missing_dir}", f"--data={tmp_path}",
                 "--corruptions=fog"], env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "pip install 'assemble-cnn[plots]'" in proc.stderr
    assert "pip install 'assemble-cnn[robustness]'" in proc.stderr
    assert "--no_plots" in proc.stderr
    proc = _run(["official.evaluate", f"--model_dir={missing_dir}", f"--data={tmp_path}",
                 "--no_plots"], env)
    assert proc.returncode != 0
    assert "assemble-cnn[" not in proc.stderr
    assert "no_such_run" in proc.stderr, proc.stderr[-2000:]


def test_make_corruptions_reports_missing_imagecorruptions_before_writing(tmp_path):
    env = _blocked_env(tmp_path, ["imagecorruptions"])
    out = tmp_path / "out"
    images = tmp_path / "in" / "val" / "cls"
    images.mkdir(parents=True)
    (images / "a.png").write_bytes(b"not read")
    proc = _run(["data.make_corruptions", f"--input={tmp_path / 'in'}", f"--output={out}",
                 "--corruptions=fog", "--seed=0"], env)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "pip install 'assemble-cnn[robustness]'" in proc.stderr
    assert not out.exists()
