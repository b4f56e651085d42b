"""check_output_path: an output location is checked before any work starts, in the user's words;
folders marked read-only get no files, neither asked-for outputs nor the default places."""

import tempfile

import pytest

from bpr_studio.io.atomic import check_output_path, folder_is_writable
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


def test_a_read_only_folder_is_refused_and_left_untouched(tmp_path):
    """For every user, root included (who could write there): a folder marked read-only gets no
    output, not even the write check's probe."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(DatasetError, match=rf"^{folder / 'out.json'}: cannot write in folder {folder}"):
            check_output_path(folder / "out.json")
        with pytest.raises(DatasetError, match=rf"cannot write in folder {folder} \(to create {folder / 'sub'}\)"):
            check_output_path(folder / "sub", folder=True)
        assert list(folder.iterdir()) == [] and not folder_is_writable(folder)
    finally:
        folder.chmod(0o755)
    assert folder_is_writable(folder) and not folder_is_writable(tmp_path / "missing")


def test_default_places_skip_a_read_only_dataset_folder(tmp_path, monkeypatch):
    """The session file and the export folder go beside the dataset only where that folder may be
    written; a read-only one sends them to the user's folders, and nothing is written into it."""
    from bpr_studio.session.export import DatasetSource, default_export_path
    from bpr_studio.session.store import default_session_path

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    shelf = tmp_path / "shelf"
    dataset = shelf / "photos"
    dataset.mkdir(parents=True)
    annotations = dataset / "annotations.json"
    annotations.write_text("{}")
    assert default_session_path(annotations) == dataset / "annotations.bprsession"
    assert default_export_path(DatasetSource(annotations, "coco")) == shelf / "photos_export"
    for folder in (dataset, shelf):
        folder.chmod(0o555)
    try:
        session = default_session_path(annotations, dataset / "predictions.json")
        assert session.parent == tmp_path / "data" / "bpr-studio" / "sessions"
        assert session.name.startswith("annotations.predictions-") and session.suffix == ".bprsession"
        assert default_export_path(DatasetSource(annotations, "coco")) == tmp_path / "home" / "photos_export"
    finally:
        for folder in (dataset, shelf):
            folder.chmod(0o755)
