"""Which person each shipped face photo shows: a reviewed data file made with dlib's descriptor + an eye check.

See ``fmkit/data/persons/README.md`` for how the grouping was made; ``scripts/group_lfw_persons.py`` proposes it.
"""

from __future__ import annotations

import csv
import functools
import importlib.resources
from importlib.resources.abc import Traversable

#: The grouping: columns ``photo,person,how``, one row per photo ``fmkit synth`` can use.
PERSONS_FILE: Traversable = importlib.resources.files("fmkit.data") / "persons" / "lfw_subset_persons.csv"


@functools.cache
def photo_persons() -> dict[str, str]:
    """Photo name (``astronaut``, ``hopper``, ``lfw000``..``lfw099``) → person id (``p000``..)."""
    with PERSONS_FILE.open(newline="") as f:
        return {row["photo"]: row["person"] for row in csv.DictReader(f)}
