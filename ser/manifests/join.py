"""Join the manifests of several corpora into one (``ser manifest join``), for cross-corpus protocols.

Every row of the joined manifest:

* keeps its id (two manifests sharing an id are refused, naming both and examples; ``prefix`` writes
  ``<corpus>/<id>`` instead);
* gets ``extra["corpus"]`` = its manifest's header corpus;
* has its speaker qualified as ``<corpus>/<speaker>``, so speakers of two corpora never collide;
* keeps its ``audio`` string unchanged: the header's ``roots`` maps each corpus to the absolute folder
  its relative paths are resolved against. Audio fingerprints hash that string, the segment and the
  file's content, so a store extracted from a corpus' own manifest still matches the joined rows (same
  ids, same fingerprints), and ``ser extract`` can also build one store over the joined manifest.

The header corpus is the sorted corpus names joined with ``+`` (``emodb+ravdess``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ser.manifests.schema import Manifest, ManifestError, ManifestHeader, Utterance, read_manifest, write_manifest

JOIN_MARK = "+"
"""Separates corpus names in a joined manifest's header corpus."""


@dataclass
class JoinReport:
    """What [`join_manifests`][ser.manifests.join.join_manifests] wrote."""

    output: Path
    """The joined manifest."""
    corpus: str
    """Its header corpus (``emodb+ravdess``)."""
    rows: dict[str, int] = field(default_factory=dict)
    """Corpus -> rows taken from its manifest."""

    def lines(self) -> list[str]:
        parts = ", ".join(f"{corpus} {n}" for corpus, n in self.rows.items())
        return [f"{self.output}: {sum(self.rows.values())} rows ({self.corpus}: {parts})"]


def join_manifest_objects(manifests: Sequence[Manifest], *, prefix: bool = False) -> Manifest:
    """The joined manifest of ``manifests`` (in memory; see the module docstring for what each row gets)."""
    if len(manifests) < 2:
        raise ManifestError("joining needs two or more manifests (one per corpus)")
    seen_corpus: dict[str, Manifest] = {}
    for manifest in manifests:
        corpus = manifest.header.corpus
        if JOIN_MARK in corpus or manifest.header.roots:
            raise ManifestError(
                f"{manifest.path}: already a joined manifest ({corpus}); join the per-corpus manifests it was made from"
            )
        if corpus in ("unknown", ""):
            raise ManifestError(
                f"{manifest.path}: the header names no corpus; rebuild it with `ser manifest CORPUS ROOT -o ...` "
                '(or add a header line with "corpus") so its rows can be told apart after joining'
            )
        if corpus in seen_corpus:
            raise ManifestError(
                f"{seen_corpus[corpus].path} and {manifest.path} are both {corpus!r} manifests; a joined manifest "
                "holds each corpus once: build one manifest of that corpus (or rename one header's corpus)"
            )
        seen_corpus[corpus] = manifest
    owner: dict[str, Manifest] = {}
    clashes: dict[tuple[int, int], list[str]] = {}
    index = {id(m): i for i, m in enumerate(manifests)}
    rows: list[Utterance] = []
    roots: dict[str, str] = {}
    for manifest in manifests:
        corpus = manifest.header.corpus
        roots[corpus] = os.path.abspath(manifest.root)
        for utt in manifest.utterances:
            uid = f"{corpus}/{utt.id}" if prefix else utt.id
            first = owner.setdefault(uid, manifest)
            if first is not manifest:
                clashes.setdefault((index[id(first)], index[id(manifest)]), []).append(uid)
            rows.append(
                dataclasses.replace(
                    utt,
                    id=uid,
                    speaker=f"{corpus}/{utt.speaker}" if utt.speaker else utt.speaker,
                    extra={**utt.extra, "corpus": corpus},
                )
            )
    if clashes:
        (a, b), ids = next(iter(clashes.items()))
        total = sum(len(v) for v in clashes.values())
        raise ManifestError(
            f"{total} ids occur in two manifests, e.g. {', '.join(ids[:3])} in both {manifests[a].path} "
            f"({manifests[a].header.corpus}) and {manifests[b].path} ({manifests[b].header.corpus}); "
            "pass --prefix to write ids as <corpus>/<id> (stores extracted from the separate manifests then "
            "no longer match: extract one store over the joined manifest)"
        )
    label_sets = {m.header.label_set for m in manifests}
    header = ManifestHeader(
        corpus=JOIN_MARK.join(sorted(seen_corpus)),
        root=".",
        label_set=label_sets.pop() if len(label_sets) == 1 else None,
        roots=dict(sorted(roots.items())),
    )
    return Manifest(header=header, utterances=rows)


def join_manifests(
    paths: Sequence[str | os.PathLike[str]], output: str | os.PathLike[str], *, prefix: bool = False
) -> JoinReport:
    """Read the manifests at ``paths``, join them and write the result to ``output`` (atomically)."""
    output = Path(output)
    manifests = [read_manifest(p) for p in paths]
    resolved = {Path(p).resolve() for p in paths}
    if output.resolve() in resolved:
        raise ManifestError(f"{output} is one of the manifests being joined; write the joined manifest elsewhere")
    joined = join_manifest_objects(manifests, prefix=prefix)
    write_manifest(output, joined.header, joined.utterances)
    report = JoinReport(output=output, corpus=joined.header.corpus)
    for manifest in manifests:
        report.rows[manifest.header.corpus] = len(manifest.utterances)
    return report
