"""A miniature CREMA-D tree: ``AudioWAV/`` with a few clips of three actors, plus the metadata tables.

The summary table uses the released layout (an unnamed, quoted index column first) and includes a
clip whose perceived voice label differs from the intended one and a tie (``A:N``).
"""

from __future__ import annotations

from pathlib import Path

from tests.fakes import write_tone

CLIPS = (
    "1001_DFA_ANG_XX",
    "1001_IEO_HAP_LO",
    "1001_IEO_HAP_HI",
    "1002_TIE_SAD_XX",
    "1002_ITS_NEU_XX",
    "1003_WSI_FEA_XX",
    "1003_IOM_DIS_MD",
)

DEMOGRAPHICS = """\
"ActorID","Age","Sex","Race","Ethnicity"
1001,51,"Male","Caucasian","Not Hispanic"
1002,21,"Female","Caucasian","Not Hispanic"
1003,42,"Female","Asian","Not Hispanic"
"""

SUMMARY = """\
"","FileName","VoiceVote","VoiceLevel","FaceVote","FaceLevel","MultiModalVote","MultiModalLevel"
"1","1001_DFA_ANG_XX","A","60","A","50.5","A","64.8"
"2","1001_IEO_HAP_LO","N","71.67","H","57","H","57.38"
"3","1001_IEO_HAP_HI","H","80","H","70","H","75"
"4","1002_TIE_SAD_XX","S","55.2","S","60","S","58"
"5","1002_ITS_NEU_XX","N","90","N","85","N","88"
"6","1003_WSI_FEA_XX","F","45","F","40","F","42"
"7","1003_IOM_DIS_MD","A:N","33.33","D","50","D","44"
"8","1004_TAI_HAP_XX","H","70","H","70","H","70"
"""


def make_cremad_tree(root: Path, with_metadata: bool = True) -> Path:
    """Build the fake corpus under ``root`` (clips in ``root/AudioWAV``) and return ``root``."""
    for stem in CLIPS:
        write_tone(root / "AudioWAV" / f"{stem}.wav", seconds=0.1)
    if with_metadata:
        (root / "VideoDemographics.csv").write_text(DEMOGRAPHICS, encoding="utf-8")
        (root / "summaryTable.csv").write_text(SUMMARY, encoding="utf-8")
    return root
