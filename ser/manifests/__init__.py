"""Manifests, label sets and protocols: what a corpus holds and how it is split for evaluation.

A manifest (``ser.manifests.schema``) lists one corpus' utterances, one JSON line each, built from the
raw corpus folder by an adapter (``ser.manifests.build``, ``ser.manifests.corpora``) and checked by
``ser.manifests.validation``. Label sets (``ser.manifests.labels``) map raw labels to a fixed class
list; protocols (``ser.manifests.protocols``) turn a manifest into folds. A leaf package: the standard
library, numpy, h5py, zarr and audio-header readers only (no torch, no other ``ser`` package).
"""
