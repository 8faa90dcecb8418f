"""Reading the YAML files users write (fit configs, grids, augmentation policies) with errors that
name the file and what it should be."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ser.errors import UserError


def read_yaml(path: str | Path, what: str, error: type[UserError] = UserError) -> Any:
    """The parsed content of ``path`` (``what`` names it in messages: "grid file", "fit config")."""
    import yaml

    try:
        return yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise error(f"{path}: cannot read the {what} ({err.strerror or err})") from err
    except yaml.YAMLError as err:
        raise error(f"{path}: the {what} is not valid YAML ({err})") from err
