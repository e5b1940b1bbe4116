"""``ser-dist evaluate MODEL``: score a saved model on a labelled corpus and write the training run's test reports.

Which clips:
- no ``--data``: the run's own split (``split.csv``; ``--split test`` by default), so the run's test
  metrics are reproduced exactly; a model without its run folder re-derives the split from its config;
- ``--data key=value ...``: any corpus the training data keys describe (``root=DIR corpus=emodb``,
  ``manifest=FILE``, ``hf_dataset=ID_OR_DIR label_column=...``, ``labels=a,b,...``), every clip by default (``--split all``), or one split of
  ``--data split=...`` with the model's seed.

The clips are decoded and cut exactly as in training (the model's ``sample_rate`` and ``max_seconds``)
and scored by ``ser_dist.scoring.evaluate``, as validation and the test split are in training, so the
numbers mean the same thing.

The model folder is untrusted: what its config names (its corpus adapter, its loss) is resolved inside
``registry.untrusted`` and never imported; a corpus given with ``--data`` is the user's own and may be an
import path, as in training.
"""

from __future__ import annotations

import collections
import contextlib
from pathlib import Path

from ..data.records import DataError, Record
from ..errors import UserError

SPLIT_CHOICES = ("test", "val", "train", "all")


def parse_label_map(text: str | None) -> dict[str, str]:
    """``"angry=Anger,sad=Sad"`` -> {"angry": "Anger", "sad": "Sad"}."""
    if not text:
        return {}
    mapping = {}
    for item in text.split(","):
        source, sep, target = item.partition("=")
        if not sep or not source.strip() or not target.strip():
            raise UserError(f"--label-map {text!r}: give corpus=model pairs separated by commas, e.g. --label-map angry=Anger,sad=Sad")
        mapping[source.strip()] = target.strip()
    return mapping


def _suggest(unknown: list[str], model_labels: list[str], corpus: list[str]) -> str:
    """How to reconcile: a --label-map guess (same name ignoring case, else the same first three letters:
    angry -> Anger), and the classes with no counterpart to leave out with --data labels=..."""
    pairs, unmatched = [], []
    for label in unknown:
        match = [m for m in model_labels if m.lower() == label.lower()] or [m for m in model_labels if m.lower()[:3] == label.lower()[:3]]
        if len(match) == 1:
            pairs.append(f"{label}={match[0]}")
        else:
            unmatched.append(label)
    advice = []
    if pairs:
        advice.append(f"--label-map {','.join(pairs)}")
    if unmatched:
        keep = [label for label in corpus if label not in unmatched]
        advice.append(f"leave out {', '.join(unmatched)} with --data labels={','.join(keep)}")
    return "; ".join(advice) or "--label-map CORPUS=MODEL,..."


def check_labels(records: list[Record], model_labels: list[str], label_map: dict[str, str], where: str) -> list[str]:
    """Apply ``label_map`` to the records; fail on a label the model does not know. Returns the model's
    classes the corpus lacks (scored anyway: UA averages the classes present)."""
    bad_targets = sorted(set(label_map.values()) - set(model_labels))
    if bad_targets:
        raise UserError(f"--label-map maps to {bad_targets}, which the model does not predict; the model's labels are {model_labels}")
    for rec in records:
        rec.label = label_map.get(rec.label, rec.label)
    corpus = sorted({rec.label for rec in records})
    unknown = [label for label in corpus if label not in model_labels]
    if unknown:
        raise UserError(
            f"{where}: the corpus's labels {corpus} differ from the model's {model_labels} ({', '.join(map(repr, unknown))} unknown to the model); "
            f"reconcile them: {_suggest(unknown, model_labels, corpus)}"
        )
    return [label for label in model_labels if label not in corpus]


def _run_split(run_dir: Path, split_file: Path, split: str) -> list[Record]:
    """The ``split`` rows of the run's own ``split.csv``, checked against what the run recorded in its
    ``metrics.json`` (clips per split and class): a file cut at a row boundary, or edited, still parses,
    and would score another set of clips than the run's test metrics did."""
    import csv
    import json

    from ..data.split_file import read_split

    try:
        records, indices = read_split(split_file)
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        reason = getattr(err, "strerror", None) or getattr(err, "reason", None) or str(err)
        raise DataError(
            f"{split_file}: not a readable split file ({reason}); the run's split is damaged: evaluate with --data root=DIR ... instead"
        ) from None
    chosen = [records[i] for i in indices[split]]
    metrics_file = run_dir / "metrics.json"
    if not metrics_file.exists():  # an unfinished run: nothing recorded to compare with
        return chosen
    try:
        metrics = json.loads(metrics_file.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        reason = getattr(err, "msg", None) or getattr(err, "strerror", None) or str(err)
        raise DataError(
            f"{metrics_file}: not valid JSON ({reason}), so {split_file} cannot be checked against the run; evaluate with --data root=DIR ... instead"
        ) from None
    recorded = ((metrics.get("data") or {}).get("split") or {}).get(split) if isinstance(metrics, dict) else None
    expected, per_class = None, None
    if isinstance(recorded, dict):
        expected, per_class = recorded.get("num_clips"), recorded.get("per_class")
    if expected is None and split == "test" and isinstance(metrics, dict):
        expected = (metrics.get("test") or {}).get("num_examples")
    found = collections.Counter(rec.label for rec in chosen)
    if isinstance(expected, int) and expected != len(chosen):
        raise DataError(
            f"{split_file}: {len(chosen)} {split} clips, but the run recorded {expected} in {metrics_file.name}; the split file was cut or edited, "
            "so it would not reproduce the run: restore it, or evaluate with --data root=DIR ..."
        )
    if isinstance(per_class, dict) and {k: v for k, v in per_class.items() if v} != dict(found):
        differ = sorted(label for label in set(per_class) | set(found) if per_class.get(label, 0) != found.get(label, 0))
        raise DataError(
            f"{split_file}: the {split} clips per class differ from what the run recorded in {metrics_file.name} "
            f"({', '.join(f'{label} {found.get(label, 0)} vs {per_class.get(label, 0)}' for label in differ[:4])}); "
            "the split file was edited: restore it, or evaluate with --data root=DIR ..."
        )
    return chosen


def _records_to_score(exp, model_dir: Path, data_overrides: list[str], split: str | None) -> tuple[list[Record], dict, str, object]:
    """The clips to score, a data summary for metrics.json, a description of where they came from, and the
    Hugging Face dataset they are rows of (None for files)."""
    from ..config import Data, apply_overrides
    from ..data.pipeline import corpus_location, scan_corpus
    from ..overrides import data_overrides as parse_data_overrides

    run_dir = model_dir.parent if model_dir.name == "model" else None
    if not data_overrides:
        split = split or "test"
        if split == "all":
            raise UserError("--split all needs a corpus: pass --data root=DIR (or manifest=FILE) ...")
        split_file = run_dir / "split.csv" if run_dir is not None else None
        if split_file is not None and split_file.exists():
            records = _run_split(run_dir, split_file, split)
            hf = None
            if exp.data.hf_dataset is not None:  # the rows of the run's dataset: their audio is read from it
                from ..data.hf import scan_data

                hf = scan_data(exp.data).dataset
                _check_same_dataset(run_dir, hf, exp.data.hf_dataset)
            return records, {"split_file": str(split_file), "split": split}, f"{split_file} ({split} rows)", hf
        import dataclasses

        data = dataclasses.replace(exp.data, cache_dir=None)  # the user's decode cache, never a folder the model's files name
        where = f"the model's training corpus ({corpus_location(data)}, data.split={data.split})"
    else:
        # the model's audio settings; the user's decode cache, never a folder the model's files name
        data = Data(sample_rate=exp.data.sample_rate, max_seconds=exp.data.max_seconds, min_seconds=exp.data.min_seconds)
        holder = apply_overrides(type(exp)(data=data), parse_data_overrides(data_overrides))
        data = holder.data
        from ..config import SPLITS
        from ..config_checks import check_choice

        check_choice("--data split", data.split, SPLITS)
        for key in ("sample_rate", "max_seconds"):
            if getattr(data, key) != getattr(exp.data, key):
                raise UserError(
                    f"--data {key}={getattr(data, key)}: the model was trained with data.{key}={getattr(exp.data, key)}; leave it out"
                )
        if data.root is None and data.manifest is None and data.hf_dataset is None:
            raise UserError("--data needs root=DIR (with corpus=NAME for a named corpus), manifest=FILE or hf_dataset=ID_OR_DIR")
        split = split or "all"
        where = str(corpus_location(data))
        if split == "all":
            scan = scan_corpus(data)
            summary = {**_corpus_keys(data), "split": "all", "set_aside_files": len(scan.problems)}
            return scan.records, summary, where, getattr(scan, "dataset", None)
    from ..data.pipeline import prepare_data

    prepared = prepare_data(data, exp.train.seed, for_training=False)
    records = [prepared.records[i] for i in prepared.split_indices[split]]
    summary = {**_corpus_keys(data), "split": split, "protocol": data.split, "fold": data.fold}
    return records, summary, f"{where} ({split} split of data.split={data.split})", prepared.hf


def _check_same_dataset(run_dir: Path, hf, source: str) -> None:
    """split.csv names a dataset's rows by index: a dataset changed since the run (rows re-saved, reordered, filtered)
    would pair the run's labels with other rows' audio, so its fingerprint must be the one the run recorded."""
    import json

    try:
        recorded = json.loads((run_dir / "data_report.json").read_text())["hf"]["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return  # no record to check against (an older run): as before
    if recorded != hf.fingerprint:
        raise UserError(
            f"data.hf_dataset={source}: the dataset changed since the run (fingerprint {hf.fingerprint}, the run's {recorded}), so the "
            "rows split.csv names are not the run's test clips; restore it, or score it anew with --data hf_dataset=... split=..."
        )


def _corpus_keys(data) -> dict:
    return {"corpus": data.corpus, "root": data.root, "manifest": data.manifest, "hf_dataset": data.hf_dataset}


def evaluate_model(
    model_ref: str,
    data_overrides: list[str] | None = None,
    *,
    split: str | None = None,
    label_map: dict[str, str] | None = None,
    out: str | Path | None = None,
    batch_size: int | None = None,
    revision: str | None = None,
) -> tuple[dict, Path]:
    """Score the model and write metrics.json, confusion_matrix.png, classification_report.txt,
    test_predictions.csv and data_report.json into ``out`` (``reports.write_evaluation_reports``). Returns (metrics, out)."""
    from ..config import from_dict
    from ..data.dataset import AudioClips, build_audio_dataset
    from ..losses import build_loss
    from ..registry import untrusted
    from ..reports import write_evaluation_reports
    from ..run_folder import check_output_folder, make_output_folder
    from ..runtime import make_accelerator
    from ..scoring import eval_loader, evaluate, test_summary
    from .export import META_FILE, load_exported
    from .hub import resolve_model_dir

    if split is not None and split not in SPLIT_CHOICES:
        raise UserError(f"--split {split}: choose one of {', '.join(SPLIT_CHOICES)}")
    model_dir = resolve_model_dir(model_ref, revision=revision)
    if out is None:
        out = (model_dir.parent if model_dir.name == "model" and Path(model_ref).exists() else Path(".")) / "evaluation"
    out = Path(out)
    check_output_folder(out)  # before anything is scored
    model, meta = load_exported(model_dir)  # refuses a folder that names anything but built-in components
    if meta.get("dimensions"):
        raise UserError(
            f"{model_dir}: ser-dist evaluate scores a model's classes, and this one predicts dimensions "
            f"({', '.join(meta['dimensions'])}); its run's metrics.json has their test CCCs, and ser-dist predict --csv their values"
        )
    exp = from_dict(meta["experiment"], check_values=False)
    labels = list(meta["labels"])
    model_file = model_dir / META_FILE
    # Without --data the corpus comes from the model's config: untrusted, so its adapter is never imported.
    with contextlib.nullcontext() if data_overrides else untrusted(model_file):
        records, summary, where, hf = _records_to_score(exp, model_dir, list(data_overrides or []), split)
    if not records:
        raise DataError(f"{where}: no clips to evaluate")
    missing = check_labels(records, labels, dict(label_map or {}), where)

    dataset, skipped = build_audio_dataset(
        records, sample_rate=exp.data.sample_rate, max_seconds=exp.data.max_seconds, min_seconds=exp.data.min_seconds, cache_dir=None, hf=hf
    )
    skipped_paths = {path for path, _ in skipped}
    usable = [rec for rec in records if rec.path not in skipped_paths]
    if not usable:
        raise DataError(f"{where}: none of the {len(records)} clips could be decoded (e.g. {skipped[0][0]}: {skipped[0][1]})")
    label2id = {name: i for i, name in enumerate(labels)}
    clips = AudioClips(dataset, label2id)
    loader = eval_loader(clips, [float(d) for d in dataset["duration"]], batch_size or exp.train.batch_size)
    accelerator = make_accelerator(exp)
    model, loader = accelerator.prepare(model, loader)
    with untrusted(model_file):  # the model's own loss.name
        criterion = build_loss(exp.loss, len(labels), [1] * len(labels))  # the loss is reported unweighted
    test = evaluate(model, loader, criterion, accelerator, labels)

    make_output_folder(out)
    per_class = collections.Counter(rec.label for rec in usable)
    results = {
        "model": str(model_ref),
        "evaluated_on": where,
        "test": test_summary(test),
        "data": {
            **summary,
            "labels": labels,
            "label_map": dict(label_map or {}),
            "classes_missing_from_corpus": missing,
            "num_used": len(usable),
            "skipped_files": len(skipped),
            "per_class": {label: per_class.get(label, 0) for label in labels},
        },
    }
    write_evaluation_reports(out, results, test, usable, skipped)
    accelerator.end_training()
    return results, out
