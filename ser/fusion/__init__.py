"""Stage 2: fusion heads trained on cached features under evaluation protocols (README: Protocols).

May import ``ser.manifests`` and ``ser.cache``, never ``ser.extract`` (training must not load
transformers).
"""
