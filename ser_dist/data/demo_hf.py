"""A folder-per-class corpus (the demo corpus) as a Hugging Face dataset, to try ``data.hf_dataset`` on::

    ser-dist make-demo-data data/demo
    python -c "from ser_dist.data.demo_hf import save_as_hf_dataset; save_as_hf_dataset('data/demo', 'data/demo_hf')"
    python recipes/bilstm_mfcc_ce.py data.hf_dataset=data/demo_hf

The dataset is built with ``datasets`` itself: one row per clip in the folder scan's order, an ``Audio``
column (the clips' WAV bytes, embedded by ``save_to_disk``), a ``ClassLabel`` label in the folder's class
order, and a ``speaker`` column from the file names (``data.speaker_pattern``). With ``test_speakers`` (and
``val_speakers``) it is a ``DatasetDict`` with its own ``train``/``validation``/``test`` splits instead, for
``data.split=fixed``. With ``dimensions=True`` it also has the demo corpus's ratings (``manifest.csv``), a float
column each (``arousal``, ``valence``, ``dominance``: ``data.targets=dimensional|both data.dimension_range=[1,5]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from .demo import MANIFEST, SPEAKER_PATTERN
from .demo_ratings import DIMENSIONS


def save_as_hf_dataset(
    corpus: str | Path,
    out: str | Path,
    *,
    speaker_pattern: str = SPEAKER_PATTERN,
    test_speakers: Sequence[str] = (),
    val_speakers: Sequence[str] = (),
    dimensions: bool = False,
):
    """Write ``corpus`` (one folder per class) to ``out`` with ``save_to_disk``; returns the Dataset or DatasetDict."""
    import datasets

    from ..config import Data
    from .pipeline import scan_corpus

    scan = scan_corpus(Data(root=str(corpus), speaker_pattern=speaker_pattern))
    columns = {"audio": datasets.Audio(), "label": datasets.ClassLabel(names=list(scan.labels)), "speaker": datasets.Value("string")}
    ratings = _ratings(Path(corpus)) if dimensions else {}
    features = datasets.Features({**columns, **{name: datasets.Value("float64") for name in DIMENSIONS if dimensions}})

    def rows(records) -> datasets.Dataset:
        columns = {
            "audio": [rec.path for rec in records],
            "label": [rec.label for rec in records],
            "speaker": [rec.speaker for rec in records],
        }
        for k, name in enumerate(DIMENSIONS if dimensions else ()):
            columns[name] = [ratings[rec.path][k] for rec in records]
        return datasets.Dataset.from_dict(columns, features=features)

    if test_speakers:
        held_out = set(test_speakers) | set(val_speakers)
        built = datasets.DatasetDict(
            {
                "train": rows([rec for rec in scan.records if rec.speaker not in held_out]),
                **({"validation": rows([rec for rec in scan.records if rec.speaker in set(val_speakers)])} if val_speakers else {}),
                "test": rows([rec for rec in scan.records if rec.speaker in set(test_speakers)]),
            }
        )
    else:
        built = rows(scan.records)
    built.save_to_disk(str(out))
    return built


def _ratings(corpus: Path) -> dict[str, tuple[float, ...]]:
    """Each clip's ratings in the demo corpus's manifest, by its resolved path."""
    import csv

    from .records import resolved

    with open(corpus / MANIFEST, newline="") as f:
        return {resolved(corpus / row["path"]): tuple(float(row[name]) for name in DIMENSIONS) for row in csv.DictReader(f)}
