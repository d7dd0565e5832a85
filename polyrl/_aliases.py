"""Import paths of earlier releases, kept working: each is the new module or function itself (not a copy).

* ``polyrl.data.recipes`` is :mod:`polyrl.jobs.recipes` (recipes train agents: a job, not storage);
* ``polyrl.data.scores.measure_reference`` is :func:`polyrl.jobs.reference.measure_reference`.

Aliasing the module object itself keeps ``monkeypatch.setattr(polyrl.data.recipes, ...)`` meaningful.
Imported last by ``polyrl/__init__.py``; nothing inside the package uses these paths.
"""

from __future__ import annotations

import sys

from polyrl import data
from polyrl.data import scores
from polyrl.jobs import recipes, reference

sys.modules["polyrl.data.recipes"] = recipes
data.recipes = recipes  # type: ignore[attr-defined]
scores.measure_reference = reference.measure_reference  # type: ignore[attr-defined]
