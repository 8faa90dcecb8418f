"""Inference with trained runs: ``ser predict`` and [`ser.load_model`][ser.predict.model.load_model].

This layer sits above ``ser.extract`` and ``ser.fusion``: it rebuilds a run's extractors from its
records (``extractors``), turns new audio and text into the run's inputs and averages its members
(``model``), and cuts long recordings into windows (``windows``).
"""
