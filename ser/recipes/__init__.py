"""Recipes: cross-stage work composed from the stages, callable from Python.

A recipe strings the stage packages together (``ser.manifests``, ``ser.extract``, ``ser.cache``,
``ser.adapt``, ``ser.fusion``, ``ser.predict``) into one piece of work that no single stage owns, such
as adapting an upstream per fold, extracting with each fold's checkpoint and fitting over all the folds.
Each recipe is a typed function that returns a dataclass of what it did and reports progress through
an optional hooks object, so a script or a cluster job can run it without the command line. The
``ser`` commands parse their options, call a recipe and print its result; recipes never print and
never import the CLI.

Recipes import the stages at module level (they are imported only inside command bodies, so
``ser --help`` still loads no torch).
"""
