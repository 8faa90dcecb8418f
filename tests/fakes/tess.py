"""A miniature TESS tree with the inconsistent folder spellings of the real download."""

from __future__ import annotations

from pathlib import Path

from tests.fakes import write_tone

TOP = "TESS Toronto emotional speech set data"
"""The extra top-level folder that archives of TESS add."""

FILES: dict[str, tuple[str, str, str]] = {
    "OAF_angry/OAF_back_angry.wav": ("OAF", "back", "angry"),
    "OAF_Fear/OAF_bar_fear.wav": ("OAF", "bar", "fear"),
    "OAF_Pleasant_surprise/OAF_base_ps.wav": ("OAF", "base", "pleasant_surprise"),
    "OAF_neutral/OAF_bath_neutral.wav": ("OAF", "bath", "neutral"),
    "YAF_pleasant_surprised/YAF_back_ps.wav": ("YAF", "back", "pleasant_surprise"),
    "YAF_pleasant_surprised/YAF_bite_pleasant_surprised.wav": ("YAF", "bite", "pleasant_surprise"),
    "YAF_pleasant_surprised/YAF_chalk_Pleasant_Surprise.wav": ("YAF", "chalk", "pleasant_surprise"),
    "YAF_disgust/YAF_jar_disgust.wav": ("YAF", "jar", "disgust"),
    "YAF_happy/YAF_dog_happy.wav": ("YAF", "dog", "happy"),
    "YAF_sad/YAF_Rain_Sad.wav": ("YAF", "rain", "sad"),
}
"""Path below the top folder -> (speaker, word, raw label) the adapter should find."""

UNPARSABLE = "YAF_sad/noise.wav"


def make_tess_tree(root: Path) -> Path:
    """Build the fake corpus in ``root/tess`` (files below ``root/tess/TOP``) and return ``root/tess``.

    Besides :data:`FILES` it holds one wav with a foreign name and a README that is not audio.
    """
    corpus = root / "tess"
    for relative in [*FILES, UNPARSABLE]:
        write_tone(corpus / TOP / relative, frequency=330.0)
    (corpus / TOP / "README.txt").write_text("Toronto emotional speech set\n", encoding="utf-8")
    return corpus
