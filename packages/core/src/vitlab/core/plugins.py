"""Which vitlab distribution a config needs: one clear line when it names a class of a package not installed.

A config (or a command-line value) can name a class of any vitlab package, by full path
(``class_path: vitlab.pretrain.MAE``) or by short name (``class_path: MAE``). When that package is not
installed, LightningCLI would print its usage and an import error deep down; :func:`check_config_plugins`
finds such names before parsing and says which distribution to install, in one line.

Short names are looked up in :data:`PLUGIN_CLASSES`, the public classes (``__all__``) of every vitlab
package. Core has to know them because the package that defines them is, by definition, not there; a test
keeps the table equal to the packages' exports.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from vitlab.core.errors import VitlabError

__all__ = ["PLUGIN_CLASSES", "MissingPluginError", "check_config_plugins", "missing_plugins"]

#: vitlab package -> public class names a config may use as a short ``class_path``.
PLUGIN_CLASSES: dict[str, frozenset[str]] = {
    "pretrain": frozenset({
        "MAE", "MAEDecoder", "MIMModule", "MTO", "BlockRandomMask", "ComplementaryMask", "CroCo", "MaskGenerator",
        "MaskOutput", "NoiseMIM", "PseudoDepthFolderDataModule", "PseudoDepthFolderDataset", "RandomPatchMask",
        "SGMIM", "SalienceMask", "SimMIM",
    }),
    "peft": frozenset({
        "AdaptFormer", "Adapter", "BitFit", "BottleneckAdapter", "DynamicAdapter", "FilterNorm", "FullFineTune",
        "ICoN", "LinearProbe", "LoRA", "LoRALinear", "PeftTuner", "SaveTrainable", "VPT", "iConFormer",
    }),
    "stereo": frozenset({
        "BinocularViT", "ETH3DStereo", "KITTIStereo", "LaplacianLoss", "LaplacianLossBounded2", "MaDisStereo",
        "MaskedMSE", "MiddleburyStereo", "SceneFlowStereo", "StereoAugmentor", "StereoDataModule",
        "StereoImagePairs", "StereoL1Loss", "StereoMatching", "StereoMetrics", "StereoPairs", "StereoPairsDataModule",
        "StereoPredictionWriter", "UniTTStereo", "MaskedForward", "ZeroShotEvaluator", "ZeroShotStereoDataModule",
    }),
    "mtl": frozenset({
        "CSAMHead", "DepthRMSE", "Downsampler", "EdgeLossProxy", "GCA", "HighResolutionHead", "MTLoRA",
        "MTLoRALinear", "MTLoRASwin", "MeanIoU", "MultiTaskDataModule", "MultiTaskFineTune", "MultiTaskLoss",
        "MultiTaskModule", "MultiTaskTransform", "NYUDMT", "NYUDMTDataModule", "NormalsMetric", "PASCALContextMT",
        "PASCALContextMTDataModule", "SCAEncoder", "SCAMTL", "SaliencyMetric",
        "SyntheticMultiTaskDataModule", "TADFormer", "TADFormerSwin", "TALinear", "TaskDecoder",
    }),
    "uda": frozenset({
        "CLDA", "DACS", "MeanTeacher", "RareClassSampler", "Segmentor", "SourceOnly", "SubsetMeanIoU",
        "UDADataModule", "UDASegmentation", "UDATrainTransform",
    }),
}

#: Every vitlab package; ``vitlab.<name>`` ships as the distribution ``vitlab-<name>`` (folder ``packages/<name>``).
PACKAGES = ("core", *PLUGIN_CLASSES)

_VITLAB_PATH = re.compile(r"^vitlab\.([A-Za-z_]\w*)(?:\.|$)")
_SHORT_NAME = re.compile(r"^[A-Za-z_]\w*$")
# command-line keys whose value may be a class (``--model MAE``, ``--data.class_path vitlab.stereo.X``, ...)
_CLASS_KEYS = re.compile(r"^--(?:[\w.]*\.)?class_path$|^--(?:model|data|optimizer|lr_scheduler)$")


class MissingPluginError(VitlabError, SystemExit):
    """A config names a class of a vitlab package that is not installed (exits with the message).

    Still a ``SystemExit`` whose ``code`` is the message, so an uncaught one prints it and exits 1 even
    outside ``vitlab``'s own error report.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = message


def _installed(package: str) -> bool:
    try:
        return importlib.util.find_spec(f"vitlab.{package}") is not None
    except (ImportError, ValueError):
        return False


def _class_values(obj: Any, short_ok: bool = False) -> Iterator[tuple[str, bool]]:
    """``(value, may_be_short_name)`` of every ``class_path`` in a parsed config (and ``model:``/``data:``
    given as a plain string); any other string that looks like ``vitlab.<pkg>.X`` is yielded too."""
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            if key == "class_path" and isinstance(value, str):
                yield value, True
            elif key in ("model", "data") and isinstance(value, str):
                yield value, True
            else:
                yield from _class_values(value)
    elif isinstance(obj, (list, tuple)):
        for item in obj:
            yield from _class_values(item)
    elif isinstance(obj, str) and obj.startswith("vitlab."):
        yield obj, short_ok


def _from_args(args: Iterable[Any]) -> Iterator[tuple[str, bool, str]]:
    """``(value, may_be_short_name, where)`` from a LightningCLI argument list (config files are read)."""
    items = [str(a) for a in args]
    i = 0
    while i < len(items):
        item, value = items[i], None
        key = item
        if item.startswith("--") and "=" in item:
            key, value = item.split("=", 1)
        elif i + 1 < len(items) and item.startswith("-"):
            value = items[i + 1]
            i += 1
        i += 1
        if value is None:
            continue
        if key in ("--config", "-c"):
            path = Path(value)
            if path.is_file():
                try:
                    cfg = yaml.safe_load(path.read_text())
                except (OSError, yaml.YAMLError):
                    continue  # LightningCLI reports unreadable configs itself
                for found, short in _class_values(cfg):
                    yield found, short, f"config {value}"
            continue
        if value.lstrip().startswith("{"):  # inline YAML/JSON value, e.g. --model '{class_path: MAE}'
            try:
                parsed = yaml.safe_load(value)
            except yaml.YAMLError:
                continue
            for found, short in _class_values(parsed):
                yield found, short, f"argument {key}"
        elif _CLASS_KEYS.match(key):
            yield value, True, f"argument {key}"
        elif value.startswith("vitlab."):
            yield value, False, f"argument {key}"


def missing_plugins(args: Any) -> list[tuple[str, str, str]]:
    """``(class name, vitlab package, where)`` for every class named by ``args`` whose package is not installed.

    ``args`` is what :func:`vitlab.core.cli.build_cli` takes: a list of command-line arguments (``--config``
    files are read), a dict config, or ``None`` for ``sys.argv``.
    """
    if args is None:
        import sys

        args = sys.argv[1:]
    if isinstance(args, Mapping):
        found = [(v, s, "config") for v, s in _class_values(args)]
    elif isinstance(args, (list, tuple)):
        found = list(_from_args(args))
    else:
        return []
    installed: dict[str, bool] = {}
    missing: list[tuple[str, str, str]] = []
    for value, short_ok, where in found:
        m = _VITLAB_PATH.match(value)
        package = None
        if m and m.group(1) in PACKAGES:
            package = m.group(1)
        elif short_ok and _SHORT_NAME.match(value):
            owners = [p for p, names in PLUGIN_CLASSES.items() if value in names]
            package = owners[0] if len(owners) == 1 else None
        if package is None:
            continue
        if package not in installed:
            installed[package] = _installed(package)
        if not installed[package] and (value, package, where) not in missing:
            missing.append((value, package, where))
    return missing


def format_missing(missing: list[tuple[str, str, str]]) -> str:
    """One line: which names need which distribution, and the command that installs them."""
    by_package: dict[str, tuple[dict[str, None], dict[str, None]]] = {}
    for name, package, where in missing:
        names, wheres = by_package.setdefault(package, ({}, {}))
        names[name] = None
        wheres[where] = None
    needs = "; ".join(
        f"{', '.join(names)} ({', '.join(wheres)}) need{'s' if len(names) == 1 else ''} vitlab-{package}"
        for package, (names, wheres) in by_package.items()
    )
    dists = " ".join(f"vitlab-{p}" for p in by_package)
    folders = " ".join(f"packages/{p}" for p in by_package)
    return f"vitlab: {needs}, not installed: pip install {dists} (from a vitlab checkout: pip install {folders})"


def check_config_plugins(args: Any) -> None:
    """Raise :class:`MissingPluginError` (one line, exit status 1) if ``args`` need an uninstalled vitlab package.

    Set ``VITLAB_SKIP_PLUGIN_CHECK=1`` to leave every class name to LightningCLI.
    """
    if os.environ.get("VITLAB_SKIP_PLUGIN_CHECK"):
        return
    missing = missing_plugins(args)
    if missing:
        raise MissingPluginError(format_missing(missing))
