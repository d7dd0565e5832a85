"""What a run directory holds that more than one module reads: a leaf shared by writers and readers.

The pipeline (:mod:`polyrl.pipeline`) writes its stages to ``pipeline.json``; the report
(:mod:`polyrl.report`) renders them in this order whatever order the file has.
"""

from __future__ import annotations

STAGES = ("dataset", "offline", "ope", "online", "evaluate", "report")
"""The pipeline's stages, in the order it runs them."""
