"""Stage 1: run upstream models over a manifest and write a feature cache store."""
