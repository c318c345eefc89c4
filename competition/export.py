"""The export stage: a run and everything it needs to predict, as one self-contained folder.

``comp export RUN DIR`` calls :func:`export`. The bundle is itself a (minimal) workspace, so
``comp predict`` runs on it unchanged; it needs no training data, no folds and no network::

    DIR/
        competition.yaml     the spec (its data paths are not needed to predict)
        experiments/<run>/   RUN and every run it reads, recursively: manifest, metrics (threshold),
                             config.yaml, blend.json, and per fold the model files (encoder weights
                             as safetensors, tokenizer, classical models as LightGBM text / skops /
                             JSON, meta-models) and done.json;
                             no OOF/test predictions, no logs
        bundle.json          the run, its kind and inputs, labels, every file with its sha256 and
                             size, the package versions it was exported with
        predict.py           the entry point: python predict.py --test FILE [--out DIR]
        wheels/              comp's own wheel, to install in an offline notebook (when exported
                             from a source checkout)
        dataset-metadata.json    with --kaggle-dataset OWNER/SLUG: what `kaggle datasets create` reads

Before writing anything, the run is replayed as ``comp predict`` replays it on the first rows of the
workspace's test file (:func:`competition.predict.rehearse`): a run that predict would refuse (a
fold or model file missing, a damaged meta-model) is refused here, naming the same fix.

No file of a bundle can run code when it loads (safetensors, JSON, LightGBM's text model, skops
with its trusted-types check). Before ``comp predict`` loads anything from a bundle it also
checks every file against ``bundle.json`` (:func:`competition.bundle.verify`): a damaged or altered file is refused.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from competition import artifacts, runs
from competition.bundle import digest
from competition.errors import InputError
from competition.models import check_precision, family
from competition.predict import check_precision_applies, needed_runs, rehearse, run_labels
from competition.spec import load_spec
from competition.workspace import BLEND, BUNDLE, MANIFEST, PREDICTION_FILES, Workspace

SKIPPED = set(PREDICTION_FILES)          # predictions, not models
ENTRY_POINT = '''"""Predict with this bundle, offline: python predict.py --test FILE [--out DIR] [--sample-submission FILE]
[--precision fp32|bf16|int8|onnx-int8]

Exported by `comp export {run}`. Runs with or without comp installed: without it, comp's own wheel in
wheels/ (pure Python) is put on the path. Writes into DIR, by default a new folder in the current
directory (the bundle itself may be read-only, as a Kaggle input is). Needs no network.
"""
import os
import sys
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
PIP_NAMES = {{"sklearn": "scikit-learn", "yaml": "pyyaml", "skops": "skops", "pydantic": "pydantic"}}
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")

def lacking():
    """requirements.txt's lines (comp's own pins of what this bundle imports) that this Python does not
    have installed, and those it has in another version."""
    import re
    from importlib import metadata
    try:
        from packaging.requirements import Requirement
    except ImportError:
        try:
            from pip._vendor.packaging.requirements import Requirement
        except ImportError:
            Requirement = None
    path, absent, other = HERE / "requirements.txt", [], []
    for line in (path.read_text().splitlines() if path.is_file() else []):
        line = line.split("#")[0].strip()
        if not line:
            continue
        try:
            version = metadata.version(re.match(r"[A-Za-z0-9._-]+", line)[0])
        except metadata.PackageNotFoundError:
            absent.append(line)
            continue
        if Requirement is not None and not Requirement(line).specifier.contains(version, prereleases=True):
            other.append(f"{{line}} (here {{version}})")
    return absent, other


absent, other = lacking()
if absent:
    import shlex
    sys.exit("predict.py: this Python lacks packages the bundle needs; install them all at once: pip install "
             + " ".join(shlex.quote(r) for r in absent) + " (offline: add their wheels to the bundle's dataset and "
             "pip install --no-index --find-links DIR them)")
if other:
    print("predict.py: warning: other versions than comp was exported with: " + "; ".join(other), file=sys.stderr)

try:
    import competition  # noqa: F401
except ModuleNotFoundError:
    wheels = sorted(HERE.glob("wheels/competition-*.whl"))
    if not wheels:
        sys.exit(f"predict.py: comp is not installed and {{HERE / 'wheels'}} holds no competition-*.whl: "
                 "pip install comp's wheel first")
    sys.path.insert(0, str(wheels[-1]))          # a pure-Python wheel imports as a zip


def missing(err: ModuleNotFoundError):
    package = PIP_NAMES.get((err.name or "").split(".")[0], (err.name or "?").split(".")[0])
    sys.exit(f"predict.py: comp needs the package {{package!r}}, which this Python lacks: "
             f"pip install {{package}} (offline: add its wheel to the bundle's dataset and "
             f"pip install --no-index --no-deps it)")


try:
    from competition.cli import app
except ModuleNotFoundError as err:
    missing(err)

if __name__ == "__main__":
    args = sys.argv[1:]
    if not any(a == "--precision" or a.startswith("--precision=") for a in args):
        args += ["--precision", {precision!r}]    # what `comp export --precision` chose
    if not any(a == "--out" or a.startswith("--out=") for a in args):
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        args += ["--out", str(Path.cwd() / f"{run}_predict_{{stamp}}")]
    try:                                          # the stages import their libraries when they run
        app(["predict", {run!r}, "--workspace", str(HERE), *args])
    except ModuleNotFoundError as err:
        missing(err)
'''


@dataclass
class ExportResult:
    run: str
    out_dir: Path
    runs: list[str]
    sizes: dict[str, int]          # part -> bytes
    wheel: Path | None
    digest: str = ""               # sha256 of bundle.json: pins every file (predict --expect)


def part_of(path: Path) -> str:
    """What a bundle file is, for the size table."""
    if path.suffix == ".safetensors":
        return "encoder weights"
    if "tokenizer" in path.parts:
        return "tokenizers"
    if path.parent.name == "encoder":
        return "encoder configs"
    if "meta" in path.parts:
        return "meta-models"
    if path.name == BLEND:
        return "blend parameters"
    if path.suffix in (".skops", ".txt") or path.name in ("head.json", "vocabulary.json"):
        return "classical models"
    if path.suffix == ".whl":
        return "comp wheel"
    return "configs and manifests"


def _labels(ws: Workspace, run: runs.Run) -> list | None:
    return run_labels(ws, load_spec(ws.spec_file), run)


def _copy_run(ws: Workspace, name: str, target: Path, labels: list | None, precision: str = "fp32") -> None:
    """A run's model files (no predictions, logs or locks), what its family adds to a bundle (its
    module's ``bundle(cfg, target, precision)``: the embedding family's frozen encoder, the torch
    families' ONNX graphs for onnx-int8), and in every manifest the class labels, so the bundle
    needs no hub and no training data."""
    source = ws.run_dir(name)
    manifest = artifacts.read_json(source / MANIFEST)
    for path in sorted(source.rglob("*")):
        rel = path.relative_to(source)
        if (path.is_dir() or path.name in SKIPPED or path.suffix == ".lock" or ".tmp-" in str(rel)
                or rel.parts[0].startswith((".", "wandb")) or rel.parts[0].startswith(".wandb")):
            continue
        if len(rel.parts) > 1 and not rel.parts[0].startswith("fold"):
            continue
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(path, dest)
    if manifest.get("labels") is None and labels is not None:
        artifacts.write_json(target / MANIFEST, {**manifest, "labels": labels})
    if manifest.get("kind", "experiment") == "experiment":
        extra = getattr(family(manifest["family"]), "bundle", None)
        if extra is not None:
            extra(runs.load_run(ws, name).config(), target, precision)


def bundle_requirements() -> list[str]:
    """comp's own requirements, as its metadata pins them, of the packages this process has imported:
    called after the rehearsal replayed the run, so it holds what predicting with the bundle imports
    (from the ``comp export`` command: exactly; in a process that imported more, a superset)."""
    def norm(name: str) -> str:
        return re.sub(r"[-_.]+", "-", name).lower()

    provides = metadata.packages_distributions()
    used = {norm(d) for module in list(sys.modules) for d in provides.get(module.split(".")[0], [])}
    out = []
    for requirement in metadata.requires("competition") or []:
        pinned, _, marker = requirement.partition(";")
        name = re.match(r"[A-Za-z0-9._-]+", pinned.strip())[0]
        if "extra" not in marker and norm(name) in used:
            out.append(pinned.replace(" ", ""))
    return out


def _build_wheel(target: Path) -> Path | None:
    """comp's wheel, built from the source checkout this package runs from (None when installed
    from a wheel: then install that same wheel in the notebook)."""
    root = Path(__file__).resolve().parents[1]
    if not (root / "pyproject.toml").is_file():
        return None

    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:     # setuptools builds in the tree: a copy, not the checkout
        source = Path(tmp) / "src"
        shutil.copytree(root / "competition", source / "competition",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(root / name, source / name)
        command = [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(target),
                   str(source)]
        proc = subprocess.run([*command, "--no-build-isolation"], capture_output=True, text=True)
        if proc.returncode != 0:      # no setuptools here: let pip fetch the build backend
            proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InputError(f"building comp's wheel from {root} failed: {proc.stderr.strip()[-500:]}; "
                         "export with {wheel} and install comp in the notebook another way", wheel="wheel=False")
    return next(target.glob("competition-*.whl"))


def export(ws: Workspace, name: str, out: Path | str, *, kaggle_dataset: str | None = None,
           wheel: bool = True, precision: str = "fp32") -> ExportResult:
    """Write run ``name`` and every run it needs into ``out`` (new or empty), whole or not at all.
    ``precision``: the bundle's ``predict.py`` predicts in it unless given ``--precision`` (see
    :func:`competition.predict.predict`)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: is a file; a bundle is a folder (new or empty): export into another path")
    if out.exists() and any(out.iterdir()):
        raise InputError(f"{out}: exists and is not empty; export into a new folder")
    if kaggle_dataset is not None and (kaggle_dataset.count("/") != 1 or not all(kaggle_dataset.split("/"))):
        raise InputError(f"{{kaggle_dataset}} {kaggle_dataset!r}: write OWNER/SLUG, e.g. alice/comp-042-bundle",
                         kaggle_dataset="kaggle_dataset")

    check_precision(precision)
    top = runs.load_run(ws, name)
    check_precision_applies(ws, top, precision)
    chosen = needed_runs(ws, name)

    rehearse(ws, name)            # what `comp predict` would refuse is refused here, before writing
    tmp = artifacts.temp_folder(out, "export into a folder you can write")
    try:
        shutil.copy2(ws.spec_file, tmp / "competition.yaml")
        labels = _labels(ws, top)
        for run_name in chosen:
            _copy_run(ws, run_name, tmp / "experiments" / run_name, labels, precision)
        artifacts.write_text(tmp / "predict.py", ENTRY_POINT.format(run=name, precision=precision))
        requires = bundle_requirements()
        artifacts.write_text(tmp / "requirements.txt", "# what predicting with this bundle imports, as comp pins it "
                             "(predict.py checks them first)\n" + "".join(f"{r}\n" for r in requires))
        built = _build_wheel(tmp / "wheels") if wheel else None
        if kaggle_dataset:
            artifacts.write_json(tmp / "dataset-metadata.json", {
                "title": f"comp bundle {name}", "id": kaggle_dataset, "licenses": [{"name": "CC0-1.0"}]})
        files = {str(p.relative_to(tmp)): {"sha256": artifacts.sha256(p), "bytes": p.stat().st_size}
                 for p in sorted(tmp.rglob("*")) if p.is_file()}
        artifacts.write_json(tmp / BUNDLE, {
            "run": name, "kind": top.manifest.get("kind", "experiment"), "runs": chosen,
            "labels": top.manifest.get("labels"), "cv": top.score, "metric": top.manifest.get("metric"),
            "precision": precision, "requires": requires, "files": files, **artifacts.environment()})
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    sizes: dict[str, int] = {}
    for rel, info in files.items():
        part = part_of(Path(rel))
        sizes[part] = sizes.get(part, 0) + info["bytes"]
    return ExportResult(name, out, chosen, sizes, None if built is None else out / "wheels" / built.name,
                        digest(out))
