"""The model card (``README.md``) every export carries: Hub YAML metadata plus what a user needs to know.

The metadata is built with ``huggingface_hub.ModelCardData`` / ``EvalResult``, so the ``model-index``
(test UA, WA and macro-F1 with the evaluation protocol) is in the layout the Hub parses. ``datasets:`` names
what the Hub can link: the Hub id of a Hugging Face dataset trained on (``meta["hf_dataset"]``, from the
run's data report), or a named corpus; a local folder or file is never named there. ``base_model`` is the
pretrained checkpoint of an SSL backbone, ``license`` the license the training dataset declares.
"""

from __future__ import annotations

from pathlib import Path

# What is known about each corpus adapter's recordings: (language code, description).
CORPUS_NOTES = {
    "iemocap": ("en", "IEMOCAP: dyadic sessions of 10 North American English actors, scripted and improvised"),
    "crema_d": ("en", "CREMA-D: 91 English-speaking actors reading 12 sentences, acted"),
    "ravdess": ("en", "RAVDESS: 24 North American English actors, two fixed sentences, acted"),
    "tess": ("en", "TESS: two Canadian English actresses, one carrier phrase with 200 words, acted"),
    "emodb": ("de", "EmoDB (Berlin): 10 German actors, 10 sentences, acted"),
    "savee": ("en", "SAVEE: 4 British English male speakers, acted"),
}
CONFUSION_IMAGE = "confusion_matrix.png"


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}"


def _hf_source(meta: dict) -> dict:
    source = meta.get("hf_dataset")
    return source if isinstance(source, dict) else {}


def hub_dataset_id(meta: dict) -> str | None:
    """The Hub id of the Hugging Face dataset the model was trained on (None: a local one, or other data)."""
    hub_id = _hf_source(meta).get("hub_id")
    return hub_id if isinstance(hub_id, str) and hub_id else None


def speaker_independent(data: dict, meta: dict) -> bool:
    """Whether the test scores are speaker-independent: no stratified split, no per-speaker statistics of test audio."""
    return data.get("split") != "stratified" and "transductive" not in str(meta.get("protocol", ""))


def base_model(exp: dict) -> str | None:
    """The Hub checkpoint the backbone starts from: a registered SSL preset's, or a Hub id given as the backbone
    (None for a random init, a local folder, or a backbone trained from scratch)."""
    model = exp.get("model") or {}
    backbone = str(model.get("backbone"))
    if not model.get("pretrained", True):
        return None
    from ..models.ssl_presets import HUB_IDS

    if backbone in HUB_IDS:
        return HUB_IDS[backbone]
    from ..hub_ids import looks_like_repo_id

    return backbone if looks_like_repo_id(backbone) and ":" not in backbone else None


def corpus_description(data: dict, meta: dict | None = None) -> tuple[str | None, str]:
    corpus = data.get("corpus") or "folder"
    if data.get("hf_dataset"):
        hub_id = hub_dataset_id(meta or {})
        if hub_id:
            return None, f"the Hugging Face dataset [`{hub_id}`](https://huggingface.co/datasets/{hub_id})"
        return None, f"a local Hugging Face dataset (`{Path(str(data['hf_dataset'])).name}`)"
    if corpus in CORPUS_NOTES:
        return CORPUS_NOTES[corpus]
    where = data.get("manifest") or data.get("root") or "a local corpus"
    return None, f"a local corpus ({'manifest' if data.get('manifest') else 'folder per class'}: `{Path(str(where)).name}`)"


def card_data(meta: dict, repo_id: str | None = None):
    """``ModelCardData`` with the Hub metadata and the test results as a ``model-index``."""
    from huggingface_hub import EvalResult, ModelCardData

    exp = meta["experiment"]
    data = exp["data"]
    language, _ = corpus_description(data, meta)
    # What the Hub can link to: a Hub dataset id, or a named corpus; never a local folder's or file's name.
    hub_dataset = hub_dataset_id(meta) if data.get("hf_dataset") else None
    corpus = data.get("corpus") if not data.get("hf_dataset") and data.get("corpus") not in (None, "folder", "manifest") else None
    dataset_name = hub_dataset or corpus or "local"
    license_name = _hf_source(meta).get("license")
    test = meta.get("test_metrics") or {}
    protocol = {"split": data.get("split"), "fold": data.get("fold"), "speaker_independent": speaker_independent(data, meta)}
    results = []
    for metric_type, metric_name, key, args in (
        ("unweighted_accuracy", "UA (unweighted accuracy, mean per-class recall)", "unweighted_accuracy", None),
        ("accuracy", "WA (weighted accuracy, plain accuracy)", "weighted_accuracy", None),
        ("f1", "macro-F1", "macro_f1", {"average": "macro"}),
    ):
        if test.get(key) is None:
            continue
        results.append(
            EvalResult(
                task_type="audio-classification",
                task_name="Speech emotion recognition",
                dataset_type=str(dataset_name),
                dataset_name=str(dataset_name) if dataset_name != "local" else "a local corpus",
                dataset_split="test",
                dataset_config=str(data.get("split")),
                dataset_args={k: v for k, v in protocol.items() if v is not None},
                metric_type=metric_type,
                metric_name=metric_name,
                metric_value=round(float(test[key]), 4),
                metric_args=args,
            )
        )
    for name in [*(meta.get("dimensions") or []), "mean"] if meta.get("dimensions") else []:
        if test.get(f"ccc_{name}") is None:
            continue
        results.append(
            EvalResult(
                task_type="audio-classification",
                task_name="Dimensional speech emotion recognition",
                dataset_type=str(dataset_name),
                dataset_name=str(dataset_name) if dataset_name != "local" else "a local corpus",
                dataset_split="test",
                dataset_config=str(data.get("split")),
                dataset_args={k: v for k, v in protocol.items() if v is not None},
                metric_type="ccc",
                metric_name=f"CCC {name}" if name != "mean" else "CCC (mean over dimensions)",
                metric_value=round(float(test[f"ccc_{name}"]), 4),
            )
        )
    # A stock transformers export (SSL backbones with a standard head) is a transformers model on the
    # Hub; everything else is the PyTorchModelHubMixin layout that ser-dist loads.
    transformers_layout = bool((meta.get("ssl") or {}).get("standard_head"))
    return ModelCardData(
        library_name="transformers" if transformers_layout else "ser-dist",
        pipeline_tag="audio-classification" if meta.get("labels") else None,  # a regressor of ratings alone is no classifier
        tags=[
            "speech-emotion-recognition",
            "audio-classification",
            "ser-dist",
            str(exp["model"]["backbone"]),
            f"loss-{exp['loss']['name']}",
        ]
        + ([] if transformers_layout else ["pytorch_model_hub_mixin"]),
        datasets=[dataset_name] if dataset_name != "local" else None,
        base_model=base_model(exp),
        license=license_name if isinstance(license_name, str) and license_name else None,
        metrics=(["unweighted_accuracy", "accuracy", "f1"] if meta.get("labels", True) else [])
        + (["ccc"] if meta.get("dimensions") else []),
        language=language,
        model_name=repo_id or exp.get("name") or "ser-dist-model",
        eval_results=results or None,
    )


def loss_text(exp: dict) -> str:
    """The loss as the card names it: ``ce``; ``ccc`` (dimensions alone); ``ce + 0.5 x ccc`` (data.targets=both)."""
    loss, targets = exp["loss"], exp["data"].get("targets", "categorical")
    dimensional = str(loss.get("dimension_loss"))
    return {"categorical": loss["name"], "dimensional": dimensional}.get(
        targets, f"{loss['name']} + {loss.get('dimension_weight'):g} x {dimensional}"
    )


def render(meta: dict, repo_id: str | None = None, has_confusion_image: bool = True) -> str:
    """The whole README.md: YAML front matter and the card's body."""
    from huggingface_hub import ModelCard

    exp = meta["experiment"]
    data, model, train, optim = exp["data"], exp["model"], exp["train"], exp["optim"]
    labels, dimensions = meta["labels"], list(meta.get("dimensions") or [])
    test = meta.get("test_metrics") or {}
    summary = meta.get("data") or {}
    rates = (
        f" It rates a recording's {', '.join(f'`{d}`' for d in dimensions)} (one regression output each"
        + (", on [0, 1]: the training ratings' scale `data.dimension_range` mapped to it)." if meta.get("dimension_range") else ").")
        if dimensions
        else ""
    )
    _, corpus_text = corpus_description(data, meta)
    name = repo_id or exp.get("name") or "ser-dist model"
    load_from = repo_id or "path/to/model"
    lines = [
        f"# {name}",
        "",
        f"Speech emotion recognition: `{model['backbone']}` trained with the `{loss_text(exp)}` loss by "
        "ser-dist on "
        + corpus_text
        + "."
        + (f" It labels a recording as one of {len(labels)} emotions: {', '.join(f'`{label}`' for label in labels)}." if labels else "")
        + rates,
        "",
        "## Use",
        "",
        "```python",
        "from ser_dist import EmotionClassifier",
        "",
        f'classifier = EmotionClassifier.from_pretrained("{load_from}")',
        'classifier(["a.wav", "b.flac"])  # [{"file", "label", "confidence", "probabilities": {label: p}}]',
        "```",
        "",
        "```bash",
        f"ser-dist predict {load_from} recordings/ --csv        # every class's probability per file",
        f"ser-dist predict {load_from} meeting.wav --window-seconds 10 --json   # long recordings: per-window + aggregate",
        "```",
        "",
    ]
    if (meta.get("ssl") or {}).get("standard_head") and meta.get("labels"):
        lines += [
            "The folder is also a stock transformers audio classifier:",
            "",
            "```python",
            "from transformers import pipeline",
            "",
            f'pipeline("audio-classification", model="{load_from}")("a.wav")',
            "```",
            "",
        ]
    lines += [
        f"Input: any common audio format, resampled to {meta['sample_rate']} Hz mono; "
        + (
            f"the model saw the first {meta['max_seconds']:g} s of each clip in training, and longer recordings are split into windows."
            if meta.get("max_seconds")
            else "the model saw whole clips in training."
        ),
        "",
        "## Results (test split)",
        "",
        f"Protocol: `data.split={data.get('split')}`"
        + (f", fold {data.get('fold')}" if data.get("fold") else "")
        + (
            " (speaker-independent: no test speaker was seen in training)"
            if speaker_independent(data, meta)
            else " (random, stratified by class: speakers may be shared)"
            if data.get("split") == "stratified"
            else f" (transductive: {meta.get('protocol')})"
        )
        + f"; {test.get('num_examples', 'n/a')} test clips.",
        "",
    ]
    if labels:
        lines += [
            "| metric | value (%) |",
            "| --- | --- |",
            f"| UA (unweighted accuracy: mean per-class recall) | {_percent(test.get('unweighted_accuracy'))} |",
            f"| WA (weighted accuracy: plain accuracy) | {_percent(test.get('weighted_accuracy'))} |",
            f"| macro-F1 | {_percent(test.get('macro_f1'))} |",
            "",
        ]
    if dimensions and "ccc_mean" in test:
        lines += ["| dimension | CCC | Pearson's r | MAE |", "| --- | --- | --- | --- |"]
        for name in [*dimensions, "mean"]:
            lines.append(f"| {name} | {test[f'ccc_{name}']:.3f} | {test[f'pearson_{name}']:.3f} | {test[f'mae_{name}']:.3f} |")
        lines.append("")
    per_class = test.get("per_class") or {}
    if per_class:
        lines += ["| label | precision | recall | F1 | test clips |", "| --- | --- | --- | --- | --- |"]
        for label in labels:
            row = per_class.get(label, {})
            lines.append(
                f"| {label} | {_percent(row.get('precision'))} | {_percent(row.get('recall'))} | {_percent(row.get('f1'))} | {row.get('support', 'n/a')} |"
            )
        lines.append("")
    if has_confusion_image:
        lines += [f"![Confusion matrix on the test split (rows: true, columns: predicted)]({CONFUSION_IMAGE})", ""]
    lines += ["## Data", ""]
    splits = summary.get("split") or {}
    if splits:
        lines += ["| split | clips | seconds | speakers | per class |", "| --- | --- | --- | --- | --- |"]
        for split_name, info in splits.items():
            per = ", ".join(f"{k} {v}" for k, v in (info.get("per_class") or {}).items())
            lines.append(f"| {split_name} | {info.get('num_clips')} | {info.get('seconds')} | {len(info.get('speakers') or [])} | {per} |")
        lines.append("")
    if summary:
        lines += [
            f"{summary.get('num_used', 'n/a')} clips used; {summary.get('skipped_files', 0)} unreadable files skipped and {summary.get('set_aside_files', 0)} set aside (listed in the run's `data_report.json`).",
            "",
        ]
    functionals = ""
    if model["backbone"] == "opensmile":
        functionals = f" (`model.smile_set={model.get('smile_set')}`, `model.mlp_layers={model.get('mlp_layers')}`)"
    lines += [
        "## Training",
        "",
        f"- model: `model.backbone={model['backbone']}`{functionals}, head `{model.get('head')}`, classifier `{model.get('classifier')}`",
        f"- loss: `{loss_text(exp)}`; optimizer `{optim['name']}` lr {optim['lr']:g}, scheduler `{optim['scheduler']}`",
        f"- {train['epochs']} epochs max, batch {train['batch_size']} per process, early stopping patience {train['early_stopping_patience']}, best epoch chosen on validation `{train['metric']}`, seed {train['seed']}",
        f"- audio: {data['sample_rate']} Hz, clips cut to {data.get('max_seconds')} s",
        "- the full resolved configuration is `experiment` in `ser_dist.json` (and the run's `config.yaml`: `ser-dist train config.yaml` retrains)",
        "",
        "## Intended use and limitations",
        "",
        "- Research on speech emotion recognition and as a baseline. Not for decisions about people "
        "(hiring, policing, health, credit): emotion recognition from voice is unreliable for individuals.",
        "- Emotion corpora are mostly **acted**: actors exaggerate prototypical emotions, so accuracy on natural, "
        "spontaneous speech is typically much lower than the numbers above.",
        "- Language and speakers: the model only saw " + corpus_text + "; other languages, accents, ages, "
        "recording conditions and microphones shift the results. Few speakers mean the results carry "
        "their voices' biases (gender, age, dialect); check per-group performance before relying on it.",
        f"- The label set is fixed ({', '.join(labels)}); every recording gets one of them, even when none applies."
        if labels
        else "- The ratings are the training raters' judgements: a prediction is what they would have said on average.",
        "",
    ]
    if model["backbone"] == "opensmile":
        lines[-1:-1] = [
            f"- Features: openSMILE's `{model.get('smile_set')}` functionals, computed by audEERING's openSMILE, whose licence "
            "(the audEERING Research License Agreement in the `opensmile` package) allows non-commercial use only (research, "
            "teaching, personal use); using it, or models and features made with it, in a product needs a commercial licence from audEERING."
        ]
    content = "---\n" + card_data(meta, repo_id).to_yaml() + "\n---\n\n" + "\n".join(lines)
    return str(ModelCard(content))


def write_model_card(directory: Path, meta: dict, repo_id: str | None = None) -> Path:
    """Write ``README.md`` (and the confusion matrix image when the test confusion matrix is known) into ``directory``."""
    directory = Path(directory)
    confusion = (meta.get("test_metrics") or {}).get("confusion_matrix")
    if confusion is not None:
        from ..reports import plot_confusion_matrix

        plot_confusion_matrix(confusion, meta["labels"], directory / CONFUSION_IMAGE, title="test split")
    path = directory / "README.md"
    path.write_text(render(meta, repo_id, has_confusion_image=confusion is not None), encoding="utf-8")
    return path
