"""The real tools the hand-off formats are for, found and started for the tests (none is mocked).

Label Studio and Datumaro pin packages that clash with glipcli's, so each lives in its own
virtual environment (.ci/run makes them: ``.venv-ls`` and ``.venv-dm`` at the repository root, or
``$GLIPCLI_LABEL_STUDIO`` / ``$GLIPCLI_DATUMARO_PYTHON``). Chromium is Debian's ``chromium``.
Tests skip, saying why, where a tool is missing; servers listen on 127.0.0.1 only and are stopped.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DUMP = Path(__file__).with_name("datumaro_dump.py")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def _tool(env: str, default: Path) -> Path | None:
    path = Path(os.environ.get(env) or default)
    return path if path.is_file() else None


def datumaro_python() -> Path | None:
    return _tool("GLIPCLI_DATUMARO_PYTHON", REPO / ".venv-dm" / "bin" / "python")


def label_studio() -> Path | None:
    return _tool("GLIPCLI_LABEL_STUDIO", REPO / ".venv-ls" / "bin" / "label-studio")


def chromium() -> Path | None:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    return Path(found) if found else None


def datumaro_boxes(fmt: str, path: Path) -> dict[str, list[list[Any]]]:
    """{item id: [[label, x, y, w, h, score], ...]} as Datumaro imports ``path`` as ``fmt``."""
    python = datumaro_python()
    assert python is not None
    done = subprocess.run([str(python), str(DUMP), fmt, str(path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def run_chromium(url: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run on ``url`` with a fresh profile (``--dump-dom``, ``--screenshot=...``)."""
    browser = chromium()
    assert browser is not None
    with tempfile.TemporaryDirectory(prefix="glip-chromium-") as profile:
        command = [str(browser), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, url]
        return subprocess.run(command, capture_output=True, text=True, timeout=timeout)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LabelStudioClient:
    """The few calls of Label Studio's HTTP API the tests make, with a legacy API token."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def call(self, method: str, path: str, body: object = None) -> Any:
        request = urllib.request.Request(
            self.url + path,
            data=None if body is None else json.dumps(body).encode("utf-8"),
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
            method=method,
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read() or b"null")


@contextmanager
def label_studio_server(data_dir: Path, images: Path, start_timeout: float = 300) -> Iterator[LabelStudioClient]:
    """A Label Studio on 127.0.0.1 with SQLite in ``data_dir``, serving ``images`` as local files; stopped after."""
    binary = label_studio()
    assert binary is not None
    port, token = _free_port(), secrets.token_hex(20)
    env = {
        **os.environ,
        "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
        "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(images),
        "LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN": "true",  # off by default since 1.19; the test user's token needs it
        "SENTRY_DSN": "",
        "FRONTEND_SENTRY_DSN": "",
        "COLLECT_ANALYTICS": "false",
    }
    command = [
        str(binary), "start", "--no-browser", "--internal-host", "127.0.0.1", "--port", str(port),
        "--data-dir", str(data_dir), "--username", "glipcli@example.com", "--password", secrets.token_hex(8),
        "--user-token", token, "--enable-legacy-api-token",
    ]  # fmt: skip
    log = open(data_dir.parent / "label-studio.log", "w")  # noqa: SIM115 - closed below, after the server
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=data_dir.parent,
                              start_new_session=True)  # fmt: skip
    client = LabelStudioClient(f"http://127.0.0.1:{port}", token)
    try:
        deadline = time.monotonic() + start_timeout
        while True:
            assert server.poll() is None, (
                f"label-studio exited: {(data_dir.parent / 'label-studio.log').read_text()[-2000:]}"
            )
            try:
                client.call("GET", "/api/projects")
                break
            except OSError:
                assert time.monotonic() < deadline, f"label-studio did not answer in {start_timeout:.0f} s"
                time.sleep(1)
        yield client
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and the workers it started, nothing else
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()
