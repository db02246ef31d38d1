"""Hub sources: recognise them, and resolve each one once, before any cell runs, into a local path.

Forms a matrix may use (one string, so `source:` and `variants:` stay plain strings):
  owner/name                    a checkpoint repository (config, tokenizer, safetensors)
  owner/name:file.gguf          one GGUF file of a repository (llama.cpp style repos hold many quantizations)

Resolution goes through huggingface_hub, so HF_TOKEN, HF_HOME / HF_HUB_CACHE, HF_ENDPOINT and HF_HUB_OFFLINE mean
what they mean everywhere else. A source that cannot be resolved is a HubError naming the variable to set; the
session turns those into one usage error (never a failed cell per source, never retries per cell). Once resolved,
workers get local paths and HF_HUB_OFFLINE=1.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]*"
HUB_RE = re.compile(rf"^(?P<repo>{_NAME}/{_NAME})(?::(?P<file>[^:/\\][^:\\]*\.gguf))?$")
# Files a checkpoint needs; weights in safetensors (a repo with only .bin gets those in a second pass).
CHECKPOINT_FILES = ("*.json", "*.safetensors", "*.model", "*.tiktoken", "*.txt", "tokenizer*", "*.jinja")
REMOTE_CODE_FILES = ("*.py",)
LEGACY_WEIGHTS = ("*.bin",)


@dataclass(frozen=True)
class HubSource:
    repo: str
    filename: str | None = None  # a single file (a GGUF) rather than a checkpoint folder
    revision: str | None = None

    @property
    def text(self) -> str:
        return f"{self.repo}:{self.filename}" if self.filename else self.repo


class HubError(Exception):
    """Why a hub source cannot be used here, and what to set to fix it."""

    def __init__(self, source: str, problem: str, message: str, remedy: str):
        # problem: offline-not-cached | unreachable | gated | not-found | error
        self.source, self.problem, self.message, self.remedy = source, problem, message, remedy
        super().__init__(f"hub source {source!r}: {message} ({remedy})")


def parse_hub_source(source: str, revision: str | None = None) -> HubSource | None:
    """owner/name or owner/name:file.gguf; None for tiny:, real:, paths (./x, /x, ~/x) and anything else."""
    if source.startswith(("tiny:", "real:", ".", "/", "~")):
        return None
    m = HUB_RE.match(source)
    if not m:
        return None
    return HubSource(m.group("repo"), m.group("file"), revision)


def hub_home() -> str:
    """Where huggingface_hub caches (its own constant honours HF_HOME and HF_HUB_CACHE)."""
    from huggingface_hub import constants
    return str(constants.HF_HUB_CACHE)


def is_offline() -> bool:
    from huggingface_hub import constants
    return bool(constants.HF_HUB_OFFLINE)


def resolve(src: HubSource, download: bool = True, trust_remote_code: bool = False) -> str:
    """The local path of a hub source: a snapshot folder, or the GGUF file. download=False (or HF_HUB_OFFLINE=1)
    looks in the cache only. Raises HubError."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub import errors as hf_errors

    local_only = not download or is_offline() or not endpoint_reachable()  # (no network when looking only)
    try:
        if src.filename:
            return hf_hub_download(src.repo, src.filename, revision=src.revision, local_files_only=local_only)
        patterns = list(CHECKPOINT_FILES) + (list(REMOTE_CODE_FILES) if trust_remote_code else [])
        folder = snapshot_download(src.repo, revision=src.revision, allow_patterns=patterns, local_files_only=local_only)
        if not any(Path(folder).glob("*.safetensors")) and not local_only:
            folder = snapshot_download(src.repo, revision=src.revision, allow_patterns=patterns + list(LEGACY_WEIGHTS))
        if not (Path(folder) / "config.json").is_file():
            raise HubError(src.text, "not-found", f"no config.json in {folder}",
                           "a checkpoint repository needs config.json; for a GGUF repository name the file: owner/name:file.gguf")
        return folder
    except HubError:
        raise
    except (hf_errors.GatedRepoError,) as exc:
        raise _gated(src, exc) from None
    except hf_errors.RepositoryNotFoundError as exc:
        # The hub answers 401 for a private or gated repository without a token, as for one that does not exist.
        if _status(exc) in (401, 403) or not os.environ.get("HF_TOKEN"):
            raise _gated(src, exc) from None
        raise HubError(src.text, "not-found", "repository not found", "check the id (owner/name) and its revision") from None
    except hf_errors.LocalEntryNotFoundError as exc:  # (a subclass of EntryNotFoundError: first)
        if is_offline() or not download:
            where = "HF_HUB_OFFLINE=1 is set" if is_offline() else "looked in the cache only"
            raise HubError(src.text, "offline-not-cached", f"not in the hub cache {hub_home()} ({where})",
                           "download it once with network (unset HF_HUB_OFFLINE), or point HF_HOME / HF_HUB_CACHE at "
                           "a cache that holds it") from None
        raise _unreachable(src, exc) from None
    except (hf_errors.RevisionNotFoundError, hf_errors.EntryNotFoundError) as exc:
        raise HubError(src.text, "not-found", _first_line(exc), "check the revision and the file name") from None
    except hf_errors.HfHubHTTPError as exc:
        if _status(exc) in (401, 403):
            raise _gated(src, exc) from None
        raise HubError(src.text, "error", _first_line(exc), "see the message; HF_ENDPOINT selects the hub") from None
    except (OSError, ValueError) as exc:  # connection errors surface as OSError subclasses (httpx wraps them)
        raise _unreachable(src, exc) from None
    except Exception as exc:  # noqa: BLE001 - httpx.ConnectError and friends do not share a base with OSError
        if type(exc).__module__.startswith(("httpx", "httpcore", "requests", "urllib3")):
            raise _unreachable(src, exc) from None
        raise


_reachable: dict[str, bool] = {}


def endpoint_reachable(timeout: float = 5.0) -> bool:
    """One HEAD request to HF_ENDPOINT, once per process, without retries: any HTTP answer (even 401 or 404) means
    reachable. Without it every download would retry with backoff (5 tries, ~25 s) before falling back to the cache."""
    import urllib.error
    import urllib.request
    from huggingface_hub import constants

    endpoint = constants.ENDPOINT
    if endpoint not in _reachable:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint.rstrip("/") + "/api/models", method="HEAD"), timeout=timeout)
            _reachable[endpoint] = True
        except urllib.error.HTTPError:
            _reachable[endpoint] = True
        except (OSError, ValueError):  # URLError (refused, DNS), timeouts, a malformed endpoint
            _reachable[endpoint] = False
    return _reachable[endpoint]


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _gated(src: HubSource, exc: BaseException) -> HubError:
    token = "HF_TOKEN is set but has no access" if os.environ.get("HF_TOKEN") else "no HF_TOKEN is set"
    return HubError(src.text, "gated", f"the hub refused access ({_status(exc) or 'gated or private'}; {token})",
                    f"set HF_TOKEN to a token that can read {src.repo} (accept its conditions on the hub first)")


def _unreachable(src: HubSource, exc: BaseException) -> HubError:
    from huggingface_hub import constants
    return HubError(src.text, "unreachable", f"the hub at {constants.ENDPOINT} cannot be reached and the cache "
                    f"{hub_home()} does not hold it ({type(exc).__name__})",
                    "set HF_HUB_OFFLINE=1 with HF_HOME pointing at a cache that holds it, or fix HF_ENDPOINT / the network")
