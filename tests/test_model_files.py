"""model.tar.gz extraction: never a stale, partial or refused model, and every bad archive is a UserError
that names the archive, the member and what to do (issue 15, items 3 and 14)."""

import io
import json
import os
import tarfile
import time

import pytest

from inference import model_files
from inference.model_files import MARKER, model_folder
from training.errors import UserError


def _archive(path, members):
    """A model.tar.gz at ``path`` from (TarInfo, bytes-or-None) pairs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _file(name, data):
    return tarfile.TarInfo(name), data


def _model(version, weights=b"w" * 64):
    return [
        _file("config.json", json.dumps({"version": version}).encode()),
        _file("model.safetensors", weights),
    ]


def _special(name, kind, **fields):
    info = tarfile.TarInfo(name)
    info.type = kind
    for key, value in fields.items():
        setattr(info, key, value)
    return info, None


def _version(folder):
    return json.loads((folder / "config.json").read_text())["version"]


# ---- item 3: nothing stale, nothing partial ------------------------------------------------------------


def test_a_new_archive_at_the_same_path_replaces_the_extracted_model(tmp_path):
    archive = _archive(tmp_path / "in" / "model.tar.gz", _model(1))
    first = model_folder(tmp_path / "in", "--model-dir")
    assert _version(first) == 1
    stat = archive.stat()
    _archive(archive, _model(2))
    # Same size and mtime as the old one: only the content tells them apart.
    os.utime(archive, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    second = model_folder(tmp_path / "in", "--model-dir")
    assert second == first and _version(second) == 2
    assert not list((tmp_path / "in").glob(".extracted.tmp-*"))  # no temporary folder left behind


def test_the_same_archive_is_extracted_once(tmp_path, monkeypatch):
    _archive(tmp_path / "in" / "model.tar.gz", _model(1))
    model_folder(tmp_path / "in", "--model-dir")
    monkeypatch.setattr(model_files, "_extract", lambda *a: pytest.fail("extracted again"))
    assert _version(model_folder(tmp_path / "in", "--model-dir")) == 1


def test_an_extracted_folder_without_a_marker_is_not_trusted(tmp_path):
    """What the old code left: extracted/config.json from some earlier archive, no record of which."""
    _archive(tmp_path / "in" / "model.tar.gz", _model(2))
    stale = tmp_path / "in" / "extracted"
    stale.mkdir()
    (stale / "config.json").write_text(json.dumps({"version": 1}))
    assert _version(model_folder(tmp_path / "in", "--model-dir")) == 2
    assert (stale / MARKER).is_file()


def test_a_refused_archive_is_refused_again_on_the_second_run(tmp_path):
    _archive(tmp_path / "in" / "model.tar.gz", [*_model(1), _file("../../x", b"evil")])
    for _ in range(2):
        with pytest.raises(UserError, match="refused member '../../x'"):
            model_folder(tmp_path / "in", "--model-dir")
    assert not (tmp_path / "in" / "extracted").exists()
    assert not (tmp_path / "x").exists()
    assert not list((tmp_path / "in").glob(".extracted.tmp-*"))


def test_a_truncated_archive_leaves_nothing_a_later_run_takes_for_a_model(tmp_path):
    good = _archive(tmp_path / "good" / "model.tar.gz", _model(1, weights=os.urandom(200_000)))
    data = good.read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "model.tar.gz").write_bytes(data[: len(data) // 2])
    for _ in range(2):
        with pytest.raises(UserError, match="is truncated or corrupt"):
            model_folder(tmp_path / "in", "--model-dir")
    assert not (tmp_path / "in" / "extracted").exists()
    # Once the whole archive is there, it extracts and serves.
    (tmp_path / "in" / "model.tar.gz").write_bytes(data)
    assert (model_folder(tmp_path / "in", "--model-dir") / "model.safetensors").stat().st_size == 200_000


def test_a_bad_archive_replacing_a_good_one_does_not_reuse_the_old_model(tmp_path):
    archive = _archive(tmp_path / "in" / "model.tar.gz", _model(1))
    model_folder(tmp_path / "in", "--model-dir")
    data = _archive(tmp_path / "next" / "model.tar.gz", _model(2, weights=os.urandom(100_000))).read_bytes()
    archive.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match="is truncated or corrupt"):
        model_folder(tmp_path / "in", "--model-dir")


def test_an_archive_without_config_json_leaves_no_extracted_folder(tmp_path):
    _archive(tmp_path / "in" / "model.tar.gz", [_file("weights.bin", b"x")])
    with pytest.raises(UserError, match="holds no config.json at its top level; it is not a model archive"):
        model_folder(tmp_path / "in", "--model-dir")
    assert not (tmp_path / "in" / "extracted").exists()


def test_leftovers_of_a_killed_extraction_are_removed_only_when_old(tmp_path):
    _archive(tmp_path / "in" / "model.tar.gz", _model(1))
    old = tmp_path / "in" / ".extracted.tmp-killed"
    young = tmp_path / "in" / ".extracted.tmp-running"
    old.mkdir()
    young.mkdir()
    day_ago = time.time() - 25 * 3600
    os.utime(old, (day_ago, day_ago))
    model_folder(tmp_path / "in", "--model-dir")
    assert not old.exists()
    assert young.exists()  # perhaps another process extracting right now


# ---- item 14: each refused member and each broken archive names itself ----------------------------------


def _refused(tmp_path, member, reason):
    archive = _archive(tmp_path / "in" / "model.tar.gz", [*_model(1), member])
    name = member[0].name
    with pytest.raises(UserError) as caught:
        model_folder(tmp_path / "in", "--model-dir")
    message = str(caught.value)
    assert message.startswith(f"--model-dir: {archive}: refused member {name!r}: {reason}")
    assert "nothing was extracted" in message
    assert "rebuild it from the model folder" in message
    assert not (tmp_path / "in" / "extracted").exists()


def test_path_traversal_is_refused_by_name(tmp_path):
    _refused(
        tmp_path,
        _file("../../x", b"x"),
        "its path leads outside the extraction folder (path traversal)",
    )


def test_an_absolute_path_is_refused_by_name(tmp_path):
    # Python's "data" filter would strip the "/" and extract it; we refuse it.
    _refused(tmp_path, _file("/etc/cron.d/evil", b"x"), "its path is absolute")


def test_a_link_out_of_the_folder_is_refused_by_name(tmp_path):
    _refused(
        tmp_path,
        _special("evil", tarfile.SYMTYPE, linkname="../../etc/passwd"),
        "it is a link to '../../etc/passwd', outside the extraction folder",
    )


def test_a_link_to_an_absolute_path_is_refused_by_name(tmp_path):
    _refused(
        tmp_path,
        _special("evil", tarfile.SYMTYPE, linkname="/etc/passwd"),
        "it is a link to '/etc/passwd', outside the extraction folder",
    )


def test_a_hard_link_out_of_the_folder_is_refused_by_name(tmp_path):
    _refused(
        tmp_path,
        _special("evil", tarfile.LNKTYPE, linkname="../outside"),
        "it is a link to '../outside', outside the extraction folder",
    )


def test_a_link_inside_the_folder_is_refused_too(tmp_path):
    """Link chains defeat the "data" filter on older interpreters (CVE-2025-4517): no links at all."""
    _refused(
        tmp_path,
        _special("weights", tarfile.SYMTYPE, linkname="config.json"),
        "it is a link (to 'config.json'), and a model archive holds no links",
    )


def test_a_device_file_is_refused_by_name(tmp_path):
    _refused(tmp_path, _special("dev/mem", tarfile.CHRTYPE, devmajor=1, devminor=1), "it is a device file")


def test_a_fifo_is_refused_by_name(tmp_path):
    _refused(tmp_path, _special("pipe", tarfile.FIFOTYPE), r"it is a special file (FIFO)")


def test_an_uncompressed_tar_is_named(tmp_path):
    (tmp_path / "in").mkdir()
    with tarfile.open(tmp_path / "in" / "model.tar.gz", "w") as tar:
        info, data = _file("config.json", b"{}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    with pytest.raises(
        UserError,
        match=r"model.tar.gz is not a gzip-compressed tar archive: it is an uncompressed tar archive\. "
        r"Give the model.tar.gz .* or pack the model folder with `tar -czf",
    ):
        model_folder(tmp_path / "in", "--model-dir")


def test_bytes_that_are_no_gzip_are_named(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "model.tar.gz").write_bytes(b"<html>not found</html>")
    with pytest.raises(
        UserError,
        match=r"is not a gzip-compressed tar archive: it starts with b'<html>no', not the gzip signature",
    ):
        model_folder(tmp_path / "in", "--model-dir")


def test_an_empty_archive_is_named(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "model.tar.gz").write_bytes(b"")
    with pytest.raises(UserError, match=r"is not a gzip-compressed tar archive: it is empty \(0 bytes\)"):
        model_folder(tmp_path / "in", "--model-dir")


def test_gzip_without_a_tar_inside_is_named(tmp_path):
    import gzip

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "model.tar.gz").write_bytes(gzip.compress(b"just text " * 100))
    with pytest.raises(UserError, match=r"model.tar.gz is gzip-compressed but holds no tar archive"):
        model_folder(tmp_path / "in", "--model-dir")


def test_a_truncated_archive_names_the_member_it_breaks_off_in(tmp_path):
    whole = _archive(tmp_path / "whole.tar.gz", _model(1, weights=os.urandom(300_000))).read_bytes()
    (tmp_path / "in").mkdir()
    archive = tmp_path / "in" / "model.tar.gz"
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError) as caught:
        model_folder(tmp_path / "in", "--model-dir")
    message = str(caught.value)
    assert message.startswith(
        f"--model-dir: {archive} is truncated or corrupt: it breaks off in or right after member 'model.safetensors'"
    )
    assert message.endswith(f"Copy or download the archive again (it is {len(whole) // 2} bytes here)")


def test_an_archive_missing_only_its_gzip_trailer_is_refused(tmp_path):
    """tarfile alone extracts every member and never reads the trailer: the CRC check must still run."""
    whole = _archive(tmp_path / "whole.tar.gz", _model(1, weights=os.urandom(300_000))).read_bytes()
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "model.tar.gz").write_bytes(whole[:-6])
    with pytest.raises(UserError, match="is truncated or corrupt"):
        model_folder(tmp_path / "in", "--model-dir")
    assert not (tmp_path / "in" / "extracted").exists()


def test_a_corrupt_crc_is_refused(tmp_path):
    whole = bytearray(_archive(tmp_path / "whole.tar.gz", _model(1)).read_bytes())
    whole[-8] ^= 0xFF  # the CRC32 in the gzip trailer
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "model.tar.gz").write_bytes(bytes(whole))
    with pytest.raises(UserError, match="is truncated or corrupt"):
        model_folder(tmp_path / "in", "--model-dir")
