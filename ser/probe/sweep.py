"""A layer sweep: one fit per pooled layer view of a store, plus the learned layer mix, run as one fit.

Every probe shares the base fit's head, protocol, label set, folds, seeds and options; only the view of
the swept modality changes (``STORE:stat=S,layer=N`` for each layer N, and ``STORE:stat=S,layer=weighted``).
The probes go to one [`ser.fusion.run.run_fits`][ser.fusion.run.run_fits] call, so their members
(layers x folds x seeds) train together where the engine stacks them, and each probe is written as the run
directory ``ser fit`` would write for that view (same name, same numbers).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ser.cache.format import config_hash
from ser.cache.reader import CacheReader
from ser.errors import UserError
from ser.fusion.config import MODALITIES, FitConfig, safe_name
from ser.fusion.heads import HEADS, head_module, torch_heads
from ser.views import join_view, parse_view, split_options

logger = logging.getLogger(__name__)

WEIGHTED = "weighted"
"""The name of the learned-mix probe (``layer=weighted``) in tables and figures."""


class ProbeError(UserError):
    """A sweep that cannot run: a one-layer store, a sequence head, a layer the store does not have."""


@dataclass(frozen=True)
class Probe:
    """One probe of a sweep: its layer and the fit that trains it."""

    layer: str
    """A layer number (``"0"``, ``"1"``, ...) or [`WEIGHTED`][ser.probe.sweep.WEIGHTED]."""
    config: FitConfig
    """The fit on that layer's view."""


@dataclass(frozen=True)
class Sweep:
    """Every probe of a store, in layer order (the learned mix last)."""

    modality: str
    """The swept input (``audio`` or ``text``)."""
    store: Path
    """The swept store."""
    stat: str
    """The pooled statistic read from every layer."""
    n_layers: int
    """The store's layer count (layer 0 is the input embedding for SSL and text upstreams)."""
    probes: list[Probe]
    """One per swept layer, then the learned mix (unless left out)."""

    @property
    def name(self) -> str:
        """``probe-<store stem>-<stat>-<head>-<protocol>-<hash>``: the folder the sweep's summary goes in;
        the hash covers every probe's config, so another label set, seed list or option gets its own."""
        base = self.probes[0].config
        digest = config_hash({"runs": [probe.config.slug() for probe in self.probes]})[:10]
        parts = (self.store.stem, self.stat, base.fusion, base.protocol)
        return "-".join(["probe", *(safe_name(part) for part in parts), digest])


def swept_modality(base: FitConfig) -> str:
    """The one input the base fit names (``audio`` or ``text``); refused unless exactly one is given."""
    given = [m for m in MODALITIES if getattr(base, m)]
    if len(given) != 1:
        named = ", ".join("--" + m for m in given) or "none"
        raise ProbeError(f"ser probe sweeps the layers of one store: give exactly one of --audio or --text ({named})")
    return given[0]


def store_layers(text: str) -> tuple[Path, str, int]:
    """``(store, stat, n_layers)`` of a pooled input text ``STORE[:stat=S]``: the statistic named, else the
    store's recommended one, else its first. A layer in the text is refused (the sweep chooses the layers);
    a store with one layer is refused, naming its layer count."""
    view = parse_view(text)
    if view.kind != "pooled":
        raise ProbeError(f"{text}: ser probe sweeps pooled layers; give STORE or STORE:stat=NAME, not a sequence view")
    if not view.auto and view.layer != "last":
        raise ProbeError(f"{text}: ser probe chooses the layers itself; give STORE or STORE:stat=NAME (and --layers)")
    with CacheReader(view.store) as reader:
        recommended = (reader.attrs.get("extractor") or {}).get("recommended_view") or ""
        stat = view.stat or split_options(recommended).get("stat") or next(iter(reader.layout.pooled))
        if stat not in reader.layout.pooled:
            raise ProbeError(f"{view.store} has no pooled statistic {stat!r}; it has {sorted(reader.layout.pooled)}")
        n_layers = reader.layout.pooled[stat][0]
    if n_layers < 2:
        raise ProbeError(
            f"{view.store} holds {n_layers} layer of {stat!r}: there is nothing to sweep; ser probe needs a "
            "multi-layer store (an SSL, Whisper or text-transformer upstream), not a one-layer feature set"
        )
    return view.store, stat, n_layers


def check_pooled_head(fusion: str, modality: str) -> None:
    """Refuse a head that does not read one pooled vector (or layer stack) of ``modality``, by name."""

    kind = head_module(fusion).INPUTS.get(modality, "").rstrip("?")
    if kind != "pooled":
        pooled = [name for name in HEADS if head_module(name).INPUTS.get(modality, "").rstrip("?") == "pooled"]
        what = f"takes {kind} {modality} features" if kind else f"does not read {modality} features"
        raise ProbeError(f"head {fusion} {what}; ser probe fits pooled heads on each layer: {', '.join(pooled)}")


def learns_layers(fusion: str) -> bool:
    """True for heads that can learn softmax layer weights (the neural ones); the classic baselines cannot."""
    return fusion in torch_heads()


def build_sweep(base: FitConfig, layers: list[int] | None = None, weighted: bool = True) -> Sweep:
    """The probes of ``base``'s one input store: ``layers`` (default every layer), then the learned mix when
    ``weighted`` and the head can learn layer weights (a classic head's sweep leaves it out, logged)."""
    modality = swept_modality(base)
    check_pooled_head(base.fusion, modality)
    store, stat, n_layers = store_layers(str(getattr(base, modality)))
    chosen = list(range(n_layers)) if layers is None else layers
    wrong = [layer for layer in chosen if not 0 <= layer < n_layers]
    if wrong or not chosen or len(set(chosen)) != len(chosen):
        raise ProbeError(
            f"--layers {','.join(map(str, chosen))}: {store.name} has layers 0..{n_layers - 1} of {stat!r}; "
            "give distinct layer numbers in that range"
        )
    names = [str(layer) for layer in chosen]
    if weighted and not learns_layers(base.fusion):
        logger.info("%s cannot learn layer weights: the sweep leaves out layer=weighted", base.fusion)
        weighted = False
    if weighted:
        names.append(WEIGHTED)
    probes = [
        Probe(name, _with_view(base, modality, join_view(store, {"stat": stat, "layer": name}))) for name in names
    ]
    return Sweep(modality=modality, store=store, stat=stat, n_layers=n_layers, probes=probes)


def _with_view(base: FitConfig, modality: str, view: str) -> FitConfig:
    """``base`` with ``modality``'s input replaced by ``view``."""
    changes: dict[str, Any] = {modality: view}
    return replace(base, **changes)


def run_sweep(sweep: Sweep) -> list[Path]:
    """Train every probe as one fit (see the module docstring); the run directories in probe order."""
    from ser.fusion.run import run_fits  # torch

    logger.info(
        "probing %d views of %s (%s): %s",
        len(sweep.probes),
        sweep.store.name,
        sweep.stat,
        sweep.probes[0].config.fusion,
    )
    return run_fits([probe.config for probe in sweep.probes])
