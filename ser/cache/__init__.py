"""The feature cache store (DESIGN §5): crash-safe writer, lazy reader, shard merge, verification.

A leaf package: numpy, h5py, zarr and the standard library only (no torch, no other ser package).
"""
