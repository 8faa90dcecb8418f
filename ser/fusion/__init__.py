"""Stage 2: fusion heads trained on cached features under evaluation protocols (DESIGN §4, §7).

May import ``ser.manifests`` and ``ser.cache``, never ``ser.extract`` (training must not load
transformers).
"""
