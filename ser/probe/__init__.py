"""Layer sweeps (``ser probe``): one probe per layer of a multi-layer store, plus the learned
``layer=weighted`` mix, trained together as one fit and summarised as a layer table and layer plots.

[`ser.probe.sweep`][ser.probe.sweep] builds and runs the fits, [`ser.probe.table`][ser.probe.table] turns
their run directories into the table (``probe.csv`` / ``probe.md``), and
[`ser.probe.figures`][ser.probe.figures] draws ``probe.png`` and ``layer_weights.png``.
"""
