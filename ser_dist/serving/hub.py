"""Where models come from and go to: a run folder, an export folder or a Hub id resolved to a local model
folder (downloaded by id), a run's export pushed to the Hub, and the ``PyTorchModelHubMixin`` loader.

The token is never handled here: ``huggingface_hub`` finds it (``HF_TOKEN`` or ``hf auth login``), and
nothing ser-dist logs or writes contains it.
"""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import PyTorchModelHubMixin

from ..errors import UserError, first_line
from ..hub_ids import REPO_ID, looks_like_repo_id
from .export import META_FILE, check_export, load_exported


class HubError(UserError):
    pass


def _first_line(err: Exception) -> str:
    return first_line(err, 300)


def download_model(repo_id: str, revision: str | None = None, **kwargs) -> Path:
    """The model's folder in the local Hub cache (``snapshot_download``; ``HF_HUB_OFFLINE=1`` uses the cache only)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import (
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        return Path(snapshot_download(repo_id, revision=revision, **kwargs))
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise HubError(
            f"{repo_id}: no such model on the Hugging Face Hub{f' at revision {revision!r}' if revision else ''} (or it is private and you are not logged in): {_first_line(err)}"
        ) from None
    except (LocalEntryNotFoundError, OfflineModeIsEnabled) as err:
        raise HubError(
            f"{repo_id}: not a local folder, and it is not in the Hub cache while the Hub cannot be reached ({_first_line(err)}); "
            "check the path, or connect once to download it (HF_HUB_OFFLINE=1 uses the local cache only)"
        ) from None
    except (HfHubHTTPError, HFValidationError, OSError) as err:
        raise HubError(
            f"{repo_id}: download from the Hugging Face Hub failed ({_first_line(err)}); check the id and your connection, or pass a local run directory"
        ) from None


def resolve_model_dir(path: str | Path, revision: str | None = None, allow_hub: bool = True) -> Path:
    """A run directory (its ``model/``), an exported model directory, or a Hub id (downloaded to the Hub cache)."""
    path = Path(path)
    if (path / META_FILE).exists():
        return path
    if (path / "model" / META_FILE).exists():
        return path / "model"
    if not path.exists():
        if allow_hub and looks_like_repo_id(str(path)):
            directory = download_model(str(path), revision=revision)
            if not (directory / META_FILE).exists():
                raise UserError(
                    f"{path}: this Hub repository is not a ser-dist model (no {META_FILE}); push one with ser-dist push RUN_DIR {path}"
                )
            return directory
        raise UserError(
            f"{path}: no such model directory; pass a run directory (train.output_dir), an exported model/ folder or a Hub id (owner/name)"
        )
    raise UserError(f"{path}: no trained model here (no {META_FILE} in it or in {path}/model); train first or pass the export folder")


def upload_plan(run_dir: Path) -> tuple[Path, list[str]]:
    """The export folder and the files a push uploads (relative paths, sorted)."""
    folder = resolve_model_dir(Path(run_dir), allow_hub=False)
    files = sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    return folder, files


def push_to_hub(
    run_dir,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
) -> str:
    """Upload a run's export (or an export folder) to ``repo_id``; returns the commit URL.

    The model card is (re)written with the repository id first, so its usage snippet names the repo. A
    failure (offline, not logged in, no write access) is one ``HubError`` line; the local files are intact.
    """
    from huggingface_hub import CommitOperationAdd, HfApi, get_token
    from huggingface_hub.errors import HfHubHTTPError, HFValidationError, OfflineModeIsEnabled

    from ..config import model_dict
    from .model_card import CONFUSION_IMAGE, render

    if not REPO_ID.match(str(repo_id)):
        raise HubError(f"repository id {repo_id!r} is not of the form owner/name (e.g. alice/ser-bilstm-emodb)")
    folder, files = upload_plan(Path(run_dir))
    # What a load would refuse is never pushed: a damaged or edited ser_dist.json fails here, in one line.
    meta, exp = check_export(folder)
    meta = {**meta, "experiment": model_dict(exp)}  # the card reads every section, defaults filled as a load fills them
    if token is None and get_token() is None:
        raise HubError(
            f"not logged in to the Hugging Face Hub: set HF_TOKEN or run `hf auth login`, then ser-dist push {run_dir} {repo_id} (the local export in {folder} is unchanged)"
        )
    # The card is rendered for this repository (its usage snippet names it) and sent from memory: the
    # local export is never modified by a push.
    card = render(meta, repo_id=repo_id, has_confusion_image=(folder / CONFUSION_IMAGE).exists()).encode("utf-8")
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in files if name != "README.md"]
    operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card))
    api = HfApi(token=token)
    try:
        api.create_repo(repo_id, private=private, repo_type="model", exist_ok=True)
        if revision:
            api.create_branch(repo_id, branch=revision, repo_type="model", exist_ok=True)
        commit = api.create_commit(
            repo_id,
            operations=operations,
            repo_type="model",
            revision=revision,
            commit_message=commit_message or f"ser-dist: upload {meta['experiment'].get('name', 'model')}",
        )
    except OfflineModeIsEnabled:
        raise HubError(
            f"cannot push to {repo_id}: HF_HUB_OFFLINE is set; unset it and retry (the local export in {folder} is intact)"
        ) from None
    except HfHubHTTPError as err:
        status = getattr(getattr(err, "response", None), "status_code", None)
        why = {
            401: "not authenticated (token missing, invalid or expired: `hf auth login`)",
            403: "the token has no write access to this repository",
        }.get(status, _first_line(err))
        raise HubError(f"push to {repo_id} failed: {why}; the local export in {folder} is intact") from None
    except (HFValidationError, OSError, ValueError) as err:
        raise HubError(
            f"push to {repo_id} failed ({_first_line(err)}); check your connection, then ser-dist push {run_dir} {repo_id}; the local export in {folder} is intact"
        ) from None
    except Exception as err:  # the HTTP client's connection errors (httpx, httpcore, ...): no network
        if type(err).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise HubError(
                f"push to {repo_id} failed: the Hub cannot be reached ({type(err).__name__}: {_first_line(err)}); the local export in {folder} is intact"
            ) from None
        raise
    return str(getattr(commit, "commit_url", None) or commit)


class SERHubModel(
    PyTorchModelHubMixin,
    library_name="ser-dist",
    pipeline_tag="audio-classification",
    tags=["speech-emotion-recognition", "ser-dist"],
):
    """``PyTorchModelHubMixin`` entry point for ser-dist exports of any backbone (BiLSTM, LSTM, VGGish, SSL).

    ``SERHubModel.from_pretrained("owner/repo" or DIR)`` returns the trained ``SERModel`` (eval mode).
    An export is the Mixin's layout (``config.json`` + ``model.safetensors``) plus ``ser_dist.json``,
    which names the backbone to rebuild, so the class to instantiate is read from the folder instead
    of being fixed here; only a registered backbone, never an import path (``export.load_exported``).
    """

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *, revision: str | None = None, **kwargs):
        # Download first, so an offline or unknown id is one clear HubError (the Mixin would raise
        # whichever error its config.json download hit).
        path = str(pretrained_model_name_or_path)
        if not Path(path).is_dir():
            keys = ("cache_dir", "force_download", "local_files_only", "token")
            path = str(download_model(path, revision=revision, **{k: kwargs.pop(k) for k in keys if k in kwargs}))
        # The Mixin fills any keyword not given here from the folder's config.json; a model's files steer
        # nothing, so these are always set by the caller (load_exported then treats the folder as untrusted).
        kwargs.setdefault("map_location", "cpu")
        kwargs.setdefault("strict", False)
        return super().from_pretrained(path, **kwargs)

    @classmethod
    def _from_pretrained(
        cls,
        *,
        model_id: str,
        revision,
        cache_dir,
        force_download,
        local_files_only,
        token,
        map_location: str = "cpu",
        strict: bool = False,
        **model_kwargs,
    ):
        if Path(model_id).is_dir():
            directory = Path(model_id)
        else:
            directory = download_model(
                model_id,
                revision=revision,
                cache_dir=cache_dir,
                force_download=force_download,
                local_files_only=local_files_only,
                token=token,
            )
        model, _ = load_exported(directory, map_location=map_location)
        return model
