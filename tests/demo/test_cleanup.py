"""The demo's disk use: uploads deleted once read, a cap per conversation, session folders under
one server folder removed at shutdown (or by the next start), Gradio's cache swept, and a login
(issue 15, item 9)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import numpy as np
import pytest
import rasterio
from gradio.utils import get_upload_folder

from demo.app import DELETE_CACHE, build_app, parse_auth
from demo.handlers import DemoHandlers
from demo.session import DemoConfig, DemoSession
from demo.workspace import PID_FILE, create_work_root, remove_work_root, sweep_stale_roots


def _geotiff(path: Path, side: int = 256) -> Path:
    data = np.random.default_rng(0).integers(0, 255, size=(3, side, side)).astype("uint8")
    profile = dict(driver="GTiff", width=side, height=side, count=3, dtype="uint8")
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


@pytest.fixture
def gradio_upload(tmp_path):
    """Place files where Gradio puts uploads: a folder of their own in its cache."""
    made: list[Path] = []

    def place(source: Path) -> Path:
        folder = Path(get_upload_folder()) / f"skyeye-test-{uuid.uuid4().hex}"
        folder.mkdir(parents=True)
        target = folder / source.name
        target.write_bytes(source.read_bytes())
        made.append(folder)
        return target

    yield place
    for folder in made:
        for f in folder.glob("*"):
            f.unlink()
        if folder.exists():
            folder.rmdir()


def test_uploads_are_deleted_once_read_accepted_or_refused(
    tiny_model, demo_config, tmp_path, gradio_upload
):
    model, processor = tiny_model
    handlers = DemoHandlers(model, processor, demo_config, None)
    good = gradio_upload(_geotiff(tmp_path / "good.tif"))
    bad_source = tmp_path / "bad.tif"
    bad_source.write_bytes(b"not a raster" * 100)
    bad = gradio_upload(bad_source)
    with pytest.warns(UserWarning, match="bad.tif"):
        state, *_, cleared = handlers.upload([str(bad), str(good)], None)
    assert len(state.entries) == 1 and cleared is None
    assert not good.exists() and not good.parent.exists()
    assert not bad.exists() and not bad.parent.exists()
    state.close()


def test_files_outside_gradios_cache_are_never_deleted(tiny_model, demo_config, examples_dir):
    model, processor = tiny_model
    handlers = DemoHandlers(model, processor, demo_config, examples_dir)
    example = examples_dir / "naip_rgbn.tif"
    state, *_ = handlers.upload([str(example)], None)
    assert example.is_file()
    state.close()


def test_a_conversation_has_a_total_upload_cap(tiny_model, tmp_path):
    model, processor = tiny_model
    first = _geotiff(tmp_path / "first.tif")
    second = _geotiff(tmp_path / "second.tif")
    cap_mb = 1.5 * first.stat().st_size / 2**20
    session = DemoSession(model, processor, DemoConfig(max_total_upload_mb=cap_mb, read_size=32))
    session.add_file(first)
    with pytest.raises(ValueError, match=r"second.tif: .*would total .*New conversation"):
        session.add_file(second)
    session.reset()  # a new conversation starts from zero
    session.add_file(second)
    session.close()


def test_session_folders_live_under_the_server_folder_and_go_with_it(tiny_model, tmp_path):
    model, processor = tiny_model
    app = build_app(model, processor, DemoConfig(read_size=32), examples_dir=None)
    root = app.skyeye_work_root
    assert (root / PID_FILE).read_text().strip() == str(os.getpid())
    assert app.delete_cache == DELETE_CACHE  # Gradio sweeps its own cache, and at shutdown
    session = DemoSession(model, processor, DemoConfig(work_root=root))
    (session.workdir / "answer_1").mkdir()
    assert session.workdir.parent == root
    remove_work_root(root)
    assert not root.exists() and not session.workdir.exists()


def test_a_new_server_sweeps_the_folders_of_dead_ones(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = create_work_root(tmp_path)
    (stale / PID_FILE).write_text(f"{dead.pid}\n")
    (stale / "skyeye-demo-session-x").mkdir()
    live = create_work_root(tmp_path)  # sweeps first
    assert not stale.exists()
    assert live.exists() and sweep_stale_roots(tmp_path) == []
    unrelated = tmp_path / "skyeye-demo-notes"
    unrelated.mkdir()
    sweep_stale_roots(tmp_path)
    assert unrelated.exists()  # no pid file: not a server folder, left alone


def test_auth_values_and_files(tmp_path):
    logins = tmp_path / "logins.txt"
    logins.write_text("# team\nana:s3cret:with:colons\n\nbo:pw\n")
    assert parse_auth(["admin:pw"], [logins]) == [
        ("admin", "pw"),
        ("ana", "s3cret:with:colons"),
        ("bo", "pw"),
    ]
    with pytest.raises(ValueError, match="--auth: expected USER:PASSWORD"):
        parse_auth(["justauser"])


def test_the_cli_refuses_a_bad_auth_before_loading(capsys):
    from demo.app import main

    assert main(["--auth", "nopassword"]) == 2
    assert "expected USER:PASSWORD" in capsys.readouterr().err


def test_auth_is_required_by_the_served_app(tiny_model):
    model, processor = tiny_model
    app = build_app(model, processor, DemoConfig(read_size=32), examples_dir=None)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    app.launch(server_port=port, prevent_thread_lock=True, auth=parse_auth(["ana:pw"]), quiet=True)
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=10)
        assert refused.value.code == 401
        form = b"username=ana&password=pw"
        login = urllib.request.urlopen(f"http://127.0.0.1:{port}/login", data=form, timeout=10)
        assert json.loads(login.read())["success"] is True
    finally:
        app.close()
        remove_work_root(app.skyeye_work_root)
