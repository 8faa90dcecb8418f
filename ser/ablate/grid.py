"""Ablation grid files: a base fit config plus axes, expanded into one job per (cell, seed).

A grid is YAML::

    name: demo                      # title of the report (default: the file name)
    out: runs/demo                  # parent of the run directories (default runs/<file stem>)
    base:                           # any `ser fit --config` record
      manifest: rav.jsonl
      protocol: speaker-loso
      audio: rav.egemaps.h5:stat=functionals
      train: {epochs: 40}
    axes:                           # crossed with each other (a product)
      fusion: [mlp, early_fusion]
      train.lr: [0.001, 0.0001]     # dotted keys reach into head / train / protocol_options
      audio:layer: [0, 6, weighted] # MODALITY:OPTION edits one option of the base's view string
    zip:                            # each group varies its keys together (paired settings),
      - text: [null, rav.minilm.h5] #   and the groups are crossed with the axes
        head.fusion: [concat, gmu]
    include:                        # extra cells, each a dict of overrides of the base
      - {fusion: mlp, text: rav.minilm.h5}
    exclude:                        # cells whose axis values match every key of an entry are dropped
      - {fusion: mlp, train.lr: 0.0001}
    seeds: [0, 1, 2]                # every cell runs once per seed (default: base.seeds or [0])

Keys of a cell: any [`FitConfig`][ser.fusion.config.FitConfig] field (``fusion``, ``audio``, ``text``,
``mocap``, ``protocol``, ``label_set``, ``val_fraction``, ...), dotted ``head.X`` / ``train.X`` /
``protocol_options.X``, or ``audio:store`` / ``audio:stat`` / ``audio:layer`` / ``audio:seq`` (the
same for text and mocap). A job is one cell and one seed; its run directory is the one ``ser fit``
would write for the same config (``<out>/<slug>-<hash>``), so finished work is recognised by
config hash whoever produced it.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ser.errors import UserError
from ser.fusion.config import MODALITIES, FitConfig, apply_overrides, config_from_dict, set_dotted
from ser.views import VIEW_KEYS, set_option
from ser.yaml_files import read_yaml

logger = logging.getLogger(__name__)

GRID_KEYS = ("name", "out", "base", "axes", "zip", "include", "exclude", "seeds")
VIEW_OPTIONS = ("store", *VIEW_KEYS)


class GridError(UserError):
    """The grid file is malformed or one of its cells is not a valid fit config."""


@dataclass(frozen=True)
class Job:
    """One fit to run: a grid cell with one training seed."""

    cell: tuple[tuple[str, Any], ...]
    """The cell's overrides of the base, in axis order (what distinguishes it in the report)."""
    seed: int
    """The training seed."""
    config: FitConfig
    """The complete fit config of the job."""

    @property
    def run_dir(self) -> Path:
        """The run directory ``ser fit`` writes for this config."""
        return Path(self.config.out) / self.config.slug()

    @property
    def record(self) -> dict[str, Any]:
        """The fit-config record (what ``ser fit --config`` would read) of this job."""
        return self.config.to_dict()

    def label(self) -> str:
        parts = [f"{key}={_short(value)}" for key, value in self.cell]
        return " ".join(parts) or "base"


@dataclass
class Grid:
    """A parsed grid file (see the module docstring)."""

    name: str
    """Title of the report (default: the file name)."""
    base: dict[str, Any]
    """The fit config every cell starts from."""
    axes: dict[str, list[Any]] = field(default_factory=dict)
    """Key -> values, crossed with each other."""
    zips: list[dict[str, list[Any]]] = field(default_factory=list)
    """Groups of keys whose values vary together; the groups are crossed with the axes."""
    include: list[dict[str, Any]] = field(default_factory=list)
    """Extra cells, each a dict of overrides of the base."""
    exclude: list[dict[str, Any]] = field(default_factory=list)
    """Cells whose values match every key of an entry are dropped."""
    seeds: list[int] = field(default_factory=lambda: [0])
    """Every cell runs once per seed."""
    out: str = "runs"
    """Parent folder of the run directories."""

    def axis_keys(self) -> list[str]:
        """Every key some cell may set, in the order axes, zips, includes."""
        keys = list(self.axes)
        for group in self.zips:
            keys += [k for k in group if k not in keys]
        for extra in self.include:
            keys += [k for k in extra if k not in keys]
        return keys


def _short(value: Any) -> str:
    text = "-" if value is None else str(value)
    return text if len(text) <= 48 else "..." + text[-45:]


def load_grid(path: Path, *, overrides: Sequence[str] = (), out: str | None = None) -> Grid:
    """Read and check a grid YAML file; ``overrides`` (``KEY=VALUE``, as ``--set``) change the base
    (``seeds=[0]`` replaces the grid's seeds)."""
    record = read_yaml(path, "grid file", GridError)
    grid = parse_grid(record, source=str(path), default_name=Path(path).stem)
    if overrides:
        grid.base = apply_overrides(grid.base, list(overrides))
        if any(pair.partition("=")[0] == "seeds" for pair in overrides):  # --set seeds=[0] replaces the grid's
            seeds = grid.base["seeds"]
            grid.seeds = [seeds] if isinstance(seeds, int) else list(seeds)
    if out is not None:
        grid.out = out
    return grid


def _as_list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise GridError(f"{where} must be a non-empty list, got {value!r}")
    return value


def parse_grid(record: Any, *, source: str = "grid", default_name: str = "grid") -> Grid:
    """Check the shape of a grid record (the YAML mapping) and turn it into a [`Grid`][ser.ablate.grid.Grid]."""
    if not isinstance(record, dict):
        raise GridError(f"{source}: a grid is a mapping with keys {', '.join(GRID_KEYS)}")
    unknown = sorted(set(record) - set(GRID_KEYS))
    if unknown:
        raise GridError(f"{source}: unknown grid keys {unknown}; a grid has {', '.join(GRID_KEYS)}")
    base = record.get("base") or {}
    if not isinstance(base, dict):
        raise GridError(f"{source}: base must be a mapping (a `ser fit --config` record)")
    axes = record.get("axes") or {}
    if not isinstance(axes, dict):
        raise GridError(f"{source}: axes must map a key to a list of values")
    axes = {str(k): _as_list(v, f"{source}: axis {k}") for k, v in axes.items()}
    zips = record.get("zip") or []
    if isinstance(zips, dict):
        zips = [zips]
    if not isinstance(zips, list):
        raise GridError(f"{source}: zip must be a list of groups, each mapping keys to equal-length lists")
    groups: list[dict[str, list[Any]]] = []
    for i, group in enumerate(zips):
        if not isinstance(group, dict) or not group:
            raise GridError(f"{source}: zip group {i} must map keys to lists of equal length")
        lists = {str(k): _as_list(v, f"{source}: zip group {i} key {k}") for k, v in group.items()}
        lengths = {k: len(v) for k, v in lists.items()}
        if len(set(lengths.values())) != 1:
            raise GridError(f"{source}: zip group {i} pairs lists of different lengths {lengths}")
        groups.append(lists)
    include = record.get("include") or []
    exclude = record.get("exclude") or []
    for name, entries in (("include", include), ("exclude", exclude)):
        if not isinstance(entries, list) or not all(isinstance(e, dict) and e for e in entries):
            raise GridError(f"{source}: {name} must be a list of non-empty mappings (key: value)")
    all_keys = [*axes, *(k for g in groups for k in g), *(k for e in include for k in e)]
    for key in all_keys:
        if key in ("seed", "seeds"):
            raise GridError(f"{source}: seeds are not an axis; list them once at the top level (seeds: [0, 1, 2])")
        if key in ("out", "folds") or key.startswith("train.device"):
            raise GridError(f"{source}: {key} cannot vary inside a grid (set it in base or with -o)")
    crossed = [*axes, *(k for g in groups for k in g)]
    duplicated = sorted({k for k in crossed if crossed.count(k) > 1})
    if duplicated:
        raise GridError(f"{source}: keys {duplicated} appear in more than one axis or zip group")
    for entry in exclude:
        stray = sorted(set(entry) - set(all_keys))
        if stray:
            raise GridError(f"{source}: exclude keys {stray} are not axes of this grid")
    seeds = record.get("seeds", base.get("seeds", [0]))
    if isinstance(seeds, int):
        seeds = [seeds]
    if not isinstance(seeds, list) or not seeds or not all(isinstance(s, int) for s in seeds):
        raise GridError(f"{source}: seeds must be a list of integers, got {seeds!r}")
    device = str((base.get("train") or {}).get("device", "auto"))
    if device.startswith("cuda:"):
        raise GridError(
            f"{source}: base train.device is {device}; leave it at auto (ser ablate pins each job to a "
            "GPU through CUDA_VISIBLE_DEVICES) or set cpu"
        )
    name = str(record.get("name") or default_name)
    out = str(record.get("out") or Path("runs") / default_name)
    return Grid(
        name=name,
        base=dict(base),
        axes=axes,
        zips=groups,
        include=list(include),
        exclude=list(exclude),
        seeds=list(dict.fromkeys(seeds)),
        out=out,
    )


def set_view_option(view: str | None, option: str, value: Any) -> str:
    """Edit one option of a ``STORE[:k=v,...]`` view string ([`ser.views.set_option`][ser.views.set_option]: ``seq`` and
    ``stat``/``layer`` exclude each other; ``store`` swaps the store and keeps the options)."""
    if view is None:
        raise GridError(f"cannot set the view option {option!r}: the base names no store for this modality")
    return set_option(view, option, value)


def apply_cell(base: dict[str, Any], cell: Iterable[tuple[str, Any]]) -> dict[str, Any]:
    """The fit-config record of ``base`` changed by a cell's ``(key, value)`` overrides."""
    import copy

    record = copy.deepcopy(base)
    for key, value in cell:
        modality, colon, option = key.partition(":")
        if colon:
            if modality not in MODALITIES or option not in VIEW_OPTIONS:
                raise GridError(
                    f"grid key {key!r}: use MODALITY:OPTION with MODALITY in {', '.join(MODALITIES)} "
                    f"and OPTION in {', '.join(VIEW_OPTIONS)}"
                )
            record[modality] = set_view_option(record.get(modality), option, value)
            continue
        try:
            set_dotted(record, key, copy.deepcopy(value), where=f"grid key {key!r}")
        except UserError as err:
            raise GridError(str(err)) from None
    return record


def cells(grid: Grid) -> list[tuple[tuple[str, Any], ...]]:
    """Every cell of the grid as ``((key, value), ...)`` overrides, in expansion order."""
    factors: list[list[tuple[tuple[str, Any], ...]]] = []
    for key, values in grid.axes.items():
        factors.append([((key, v),) for v in values])
    for group in grid.zips:
        keys = list(group)
        factors.append([tuple(zip(keys, row, strict=True)) for row in zip(*group.values(), strict=True)])
    product = [tuple(itertools.chain.from_iterable(combo)) for combo in itertools.product(*factors)] if factors else []
    if not factors and not grid.include:
        product = [()]  # a grid without axes is one cell: the base
    out = [cell for cell in product if not _excluded(cell, grid.exclude)]
    out += [tuple(entry.items()) for entry in grid.include]
    return out


def _excluded(cell: tuple[tuple[str, Any], ...], exclude: list[dict[str, Any]]) -> bool:
    values = dict(cell)
    return any(all(k in values and values[k] == v for k, v in entry.items()) for entry in exclude)


def expand(grid: Grid) -> list[Job]:
    """One [`Job`][ser.ablate.grid.Job] per (cell, seed), each a validated fit config; duplicates collapse."""
    jobs: list[Job] = []
    seen: dict[str, Job] = {}
    for cell in cells(grid):
        record = apply_cell(grid.base, cell)
        record["out"] = grid.out
        for seed in grid.seeds:
            record["seeds"] = [seed]
            try:
                config = config_from_dict(record)
            except UserError as err:
                where = " ".join(f"{k}={_short(v)}" for k, v in cell) or "the base"
                raise GridError(f"grid cell {where}: {err}") from err
            job = Job(cell=cell, seed=seed, config=config)
            slug = config.slug()
            if slug in seen:
                logger.warning(
                    "grid cell %s (seed %d) is the same fit as %s; run once", job.label(), seed, seen[slug].label()
                )
                continue
            seen[slug] = job
            jobs.append(job)
    return jobs
