"""check_output_path: an output location is checked before any work starts, in the user's words."""

import os
import tempfile

import pytest

from bpr_studio.io.atomic import check_output_path
from bpr_studio.io.errors import DatasetError


def test_accepts_new_and_existing_files_and_leaves_nothing_behind(tmp_path):
    assert check_output_path(tmp_path / "out.json") == tmp_path / "out.json"
    (tmp_path / "old.json").write_text("{}")
    assert check_output_path(str(tmp_path / "old.json")) == tmp_path / "old.json"
    assert check_output_path(tmp_path / "new" / "deeper" / "out.json") == tmp_path / "new" / "deeper" / "out.json"
    assert check_output_path(tmp_path / "dir", folder=True) == tmp_path / "dir"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["old.json"]  # no probe file, no folder created


def test_a_folder_given_as_output_file_is_named(tmp_path):
    with pytest.raises(DatasetError, match=rf"^{tmp_path}: is a folder; expected the path of a file"):
        check_output_path(tmp_path)


def test_a_file_given_as_output_folder_is_named(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(DatasetError, match=rf"^{tmp_path / 'x'}: is a file; expected a folder"):
        check_output_path(tmp_path / "x", folder=True)


def test_a_file_in_the_way_of_the_folder_is_named(tmp_path):
    (tmp_path / "x").write_text("")
    with pytest.raises(DatasetError, match=r"out\.json: cannot create folder .*x/sub, because .*x is a file"):
        check_output_path(tmp_path / "x" / "sub" / "out.json")


def test_an_unwritable_folder_is_named(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(DatasetError, match=rf"^{tmp_path / 'out.json'}: cannot write in folder {tmp_path}: "
                                           "Permission denied"):
        check_output_path(tmp_path / "out.json")
    with pytest.raises(DatasetError, match=rf"cannot write in folder {tmp_path} \(to create {tmp_path / 'a'}\)"):
        check_output_path(tmp_path / "a" / "out.json")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_a_read_only_folder_is_refused(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(DatasetError, match="cannot write in folder"):
            check_output_path(folder / "out.json")
    finally:
        folder.chmod(0o755)
