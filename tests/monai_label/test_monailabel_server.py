"""A real MONAI Label 0.8.5 server on 127.0.0.1 serving the structure_discovery bundle through the ``monaibundle``
sample app that the monailabel wheel ships, asked for label maps over HTTP as a viewer asks for them.

Run by ``make test-monailabel``; skipped where monailabel is missing. The server runs offline: the bundle is local
(``zoo_source github`` with the folder already in ``<app>/model``), SAM 2 is off (``sam2 false``: it would
download its weights), trainers are skipped. Timings are printed: run with ``-s`` to see them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

pytest.importorskip("monailabel.tasks.infer.bundle")

import requests  # a dependency of monailabel
from monailabel_support import assert_no_dataset, assert_unchanged, channel_def, check_label_map, copy_bundle, snapshot

HOST = "127.0.0.1"  # loopback only
START_TIMEOUT = 300.0  # seconds for the server to answer /info/
POLL_INTERVAL = 1.0
REQUEST_TIMEOUT = 300.0  # seconds for one inference request


def _sample_app() -> Path:
    app = Path(sys.prefix) / "monailabel" / "sample-apps" / "monaibundle"
    if not (app / "main.py").is_file():
        pytest.fail(f"the monailabel wheel's monaibundle sample app is not at {app}")
    return app


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def _tail(log: Path, lines: int = 60) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:]) if log.is_file() else "(no log)"


def _stop(process: subprocess.Popen) -> None:
    """Stop the server's whole process group: SIGTERM, then SIGKILL after 30 s."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 30), (signal.SIGKILL, 30)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def server(volumes, empty_cache, tmp_path):
    """The monaibundle app with structure_discovery in <app>/model, studies holding two generated volumes, and a
    running server on a free loopback port; yields its base URL and the paths involved; always stopped after."""
    app = tmp_path / "app"
    shutil.copytree(_sample_app(), app, ignore=shutil.ignore_patterns("__pycache__"))
    bundle = copy_bundle("structure_discovery", app / "model" / "structure_discovery")
    studies = tmp_path / "studies"
    studies.mkdir()
    images = {name: studies / f"{name}.nii.gz" for name in ("cube36", "crop40x52x36")}
    for name, path in images.items():
        shutil.copy(volumes[name], path)
    work = tmp_path / "work"  # the server's cwd: no stray .env is read, nothing lands in the repository
    (work / "tmp").mkdir(parents=True)
    results = tmp_path / "results"
    results.mkdir()
    before = snapshot(bundle)

    port = _free_port()
    command = [
        sys.executable, "-m", "monailabel.main", "start_server",  # what the `monailabel` script runs
        "--app", str(app), "--studies", str(studies),
        "--conf", "models", "structure_discovery",
        "--conf", "zoo_source", "github",
        "--conf", "sam2", "false",
        "--conf", "skip_trainers", "true",
        "--conf", "preload", "false",
        "--host", HOST, "--port", str(port),
    ]  # fmt: skip
    env = {
        **os.environ,
        "MONAI_EXT_CACHE": str(empty_cache),
        "TMPDIR": str(work / "tmp"),
        "MONAI_LABEL_SESSION_PATH": str(work / "sessions"),
        "MONAI_LABEL_TRACKING_ENABLED": "false",
    }
    log = tmp_path / "server.log"
    base = f"http://{HOST}:{port}"
    started = time.perf_counter()
    with open(log, "wb") as output:
        process = subprocess.Popen(
            command, cwd=work, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        info = None
        for _ in range(int(START_TIMEOUT / POLL_INTERVAL) + 1):
            if process.poll() is not None:
                pytest.fail(f"the server exited with code {process.returncode} before answering:\n{_tail(log)}")
            if time.perf_counter() - started > START_TIMEOUT:
                break
            try:
                response = requests.get(f"{base}/info/", timeout=10)
                if response.status_code == 200:
                    info = response.json()
                    break
            except requests.RequestException:
                pass
            time.sleep(POLL_INTERVAL)
        if info is None:
            pytest.fail(f"the server did not answer {base}/info/ within {START_TIMEOUT:.0f} s:\n{_tail(log)}")
        ready = time.perf_counter() - started
        print(f"\n[monailabel server] ready on {base} after {ready:.2f} s (process start to first /info/ answer)")
        yield {
            "base": base, "info": info, "images": images, "bundle": bundle, "before": before,
            "cache": empty_cache, "log": log, "results": results,
        }  # fmt: skip
    finally:
        _stop(process)


def test_server_infers_label_maps(server):
    """``POST /infer/structure_discovery?image=<id>&output=image`` answers 200 with a NIfTI label map on the input's
    grid whose integer values are keys of channel_def; /info/ names the parts as channel_def does; the bundle folder
    and the cache stay untouched."""
    parts = channel_def(server["bundle"])
    expected = {name.lower(): int(key) for key, name in parts.items() if name.lower() != "background"}
    models = server["info"].get("models", {})
    assert "structure_discovery" in models, f"/info/ lists models {list(models)}:\n{_tail(server['log'])}"
    assert models["structure_discovery"]["type"] == "segmentation"
    assert models["structure_discovery"]["labels"] == expected, f"/info/ labels {models['structure_discovery']}"

    for image_id, source in server["images"].items():
        start = time.perf_counter()
        response = requests.post(
            f"{server['base']}/infer/structure_discovery",
            params={"image": image_id, "output": "image"},
            data={"params": json.dumps({"device": "cpu"})},
            timeout=REQUEST_TIMEOUT,
        )
        elapsed = time.perf_counter() - start
        assert response.status_code == 200, (
            f"{image_id}: HTTP {response.status_code}: {response.text[:2000]}\n{_tail(server['log'])}"
        )
        result = server["results"] / f"{image_id}_label.nii.gz"
        result.write_bytes(response.content)
        image = check_label_map(result, source, parts)
        values = [int(v) for v in np.unique(np.asarray(image.dataobj))]
        print(
            f"[monailabel server] {image_id}: input {nib.load(str(source)).shape} -> HTTP 200, "
            f"{len(response.content)} bytes ({response.headers.get('content-type')}), shape {image.shape} "
            f"dtype {image.get_data_dtype()} values {values}; request {elapsed:.2f} s"
        )

    assert_unchanged(server["bundle"], server["before"], "the MONAI Label server")
    assert_no_dataset(server["cache"], "the MONAI Label server")
