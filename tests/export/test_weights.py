"""Hub checkpoints offline: a clear error at once, not after huggingface_hub's ~25 s of retries."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import huggingface_hub
import pytest
from huggingface_hub import constants
from huggingface_hub.errors import LocalEntryNotFoundError

from glipcli.errors import CheckpointError
from glipcli.export.weights import hub_unreachable, resolve_weights

SPEC = "hf://GLIPModel/GLIP/glip_tiny_model_o365_goldg.pth"


@pytest.fixture
def hub(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """A hub whose cache is empty; the files a network download was asked for are recorded."""
    downloads: list[str] = []

    def download(repo_id: str, filename: str, local_files_only: bool = False) -> str:
        if local_files_only:
            raise LocalEntryNotFoundError("not cached")
        downloads.append(filename)
        return str(tmp_path / filename)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    for proxy in ("https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(proxy, raising=False)
    return downloads


def _no_network(*args: object, **kwargs: object) -> socket.socket:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


def test_offline_fails_at_once_and_says_what_to_do(hub: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "create_connection", _no_network)
    start = time.perf_counter()
    with pytest.raises(CheckpointError) as caught:
        resolve_weights(SPEC)
    assert time.perf_counter() - start < 1.0 and hub == []
    message = str(caught.value)
    assert "the hub is unreachable (huggingface.co: Name or service not known)" in message
    assert "https://huggingface.co/GLIPModel/GLIP/resolve/main/glip_tiny_model_o365_goldg.pth" in message
    assert "--weights PATH" in message


def test_a_silent_network_is_given_up_after_the_timeout(hub: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    def silent(*args: object, **kwargs: object) -> socket.socket:
        time.sleep(5)  # the probe's thread outlives the test: end it as a connection would, not with an error
        return socket.socket()

    monkeypatch.setattr(socket, "create_connection", silent)
    start = time.perf_counter()
    assert hub_unreachable(timeout=0.2) == "no answer from huggingface.co in 0.2 s"
    assert time.perf_counter() - start < 1.0


def test_online_downloads(hub: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket, "create_connection", lambda *args, **kwargs: socket.socket())
    assert resolve_weights(SPEC).name == "glip_tiny_model_o365_goldg.pth"
    assert hub == ["glip_tiny_model_o365_goldg.pth"]


def test_behind_a_proxy_only_the_download_can_tell(hub: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    monkeypatch.setattr(socket, "create_connection", _no_network)
    assert hub_unreachable() is None
    resolve_weights(SPEC)
    assert hub == ["glip_tiny_model_o365_goldg.pth"]


def test_hf_hub_offline_is_respected(hub: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match=r"the hub is unreachable \(HF_HUB_OFFLINE is set\)"):
        resolve_weights(SPEC)
    assert hub == []
