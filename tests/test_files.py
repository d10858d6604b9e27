import json
import os

import pytest

from cosine_host.files import atomic_path, write_json_atomic


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.json"
    target.write_text("keep me")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("boom")
    assert target.read_text() == "keep me"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_atomic_path_refuses_existing_without_overwrite(tmp_path):
    target = tmp_path / "out.wav"
    target.write_text("keep")
    with pytest.raises(FileExistsError):
        with atomic_path(target, overwrite=False):
            pass
    assert target.read_text() == "keep"


def test_written_files_get_umask_mode_or_keep_the_replaced_mode(tmp_path):
    target = tmp_path / "r.json"
    old = os.umask(0o022)
    try:
        write_json_atomic(target, {"a": 1})
        assert target.stat().st_mode & 0o777 == 0o644
        os.chmod(target, 0o640)
        write_json_atomic(target, {"a": 2})
        assert target.stat().st_mode & 0o777 == 0o640
    finally:
        os.umask(old)
    assert json.loads(target.read_text()) == {"a": 2}
