"""Is this text a Hugging Face Hub model id (``owner/name``) rather than a local path?

Config validation asks it of ``model.backbone`` and the serving package of a model to load, so it sits
below both and imports nothing but the standard library (not ``huggingface_hub``).
"""

from __future__ import annotations

import re
from pathlib import Path

REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def looks_like_repo_id(text: str) -> bool:
    """``owner/name`` in the Hub's characters, and no local file or folder of that name."""
    return bool(REPO_ID.match(str(text))) and not Path(text).exists()
