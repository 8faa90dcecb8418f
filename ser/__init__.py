"""ser: extract speech/text features once into a cache, then fit fusion heads under honest protocols."""

__version__ = "0.1.0"
