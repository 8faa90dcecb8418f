"""The feature cache store: crash-safe writer, lazy reader, shard merge, verification (README: Feature cache stores).

A leaf package: numpy, h5py, zarr and the standard library only (no torch, no other ser package).
"""
