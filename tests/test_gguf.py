import struct
from pathlib import Path

import pytest

from engine.errors import InvalidModelError, ModelNotFoundError
from engine.gguf import read_gguf


def test_reads_the_embedded_model(model_path: Path) -> None:
    info = read_gguf(model_path)
    assert info.version == 3
    assert info.architecture == "llama"
    assert info.tensor_count > 100
    assert info.context_length == 8192
    assert info.quantization == "Q4_1"
    assert info.has_chat_template
    assert info.block_count == 30


def test_missing_file_names_the_path(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="nope.gguf does not exist"):
        read_gguf(tmp_path / "nope.gguf")


def test_not_a_gguf_file(bad_model: Path) -> None:
    with pytest.raises(InvalidModelError, match=r"broken\.gguf is not a GGUF model") as err:
        read_gguf(bad_model)
    assert "b'<htm'" in str(err.value)


@pytest.mark.parametrize("size", [0, 3, 16])
def test_tiny_files(tmp_path: Path, size: int) -> None:
    path = tmp_path / "tiny.gguf"
    path.write_bytes(b"GGUF\x03\x00\x00\x00" * 4)
    path.write_bytes(path.read_bytes()[:size])
    with pytest.raises(InvalidModelError, match="tiny.gguf"):
        read_gguf(path)


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidModelError, match="is not a file"):
        read_gguf(tmp_path)


@pytest.mark.parametrize("keep", [0.5, 0.999, 0.001])
def test_truncated_model(model_path: Path, tmp_path: Path, keep: float) -> None:
    data = model_path.read_bytes()
    path = tmp_path / "cut.gguf"
    path.write_bytes(data[: int(len(data) * keep)])
    with pytest.raises(InvalidModelError, match=r"cut\.gguf is (damaged or )?truncated"):
        read_gguf(path)


def test_unsupported_version(tmp_path: Path) -> None:
    path = tmp_path / "v9.gguf"
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 9, 0, 0))
    with pytest.raises(InvalidModelError, match="GGUF version 9"):
        read_gguf(path)


def test_hostile_counts_fail_fast(tmp_path: Path) -> None:
    path = tmp_path / "hostile.gguf"
    # claims 2**40 metadata entries, then a string whose length runs past the end of the file
    path.write_bytes(b"GGUF" + struct.pack("<IQQ", 3, 1, 2**40))
    with pytest.raises(InvalidModelError, match="not plausible"):
        read_gguf(path)
    path.write_bytes(b"GGUF" + struct.pack("<IQQQ", 3, 0, 1, 2**60) + b"key")
    with pytest.raises(InvalidModelError, match="past the end"):
        read_gguf(path)


def test_a_file_is_read_once_per_version_and_a_changed_one_again(model_path: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The model load and the tool check read the same header at once: parsed once, not twice.
    A file that changes (a download finishing, a copy over it) is read again."""
    import shutil

    from engine import gguf

    copy = tmp_path / "model.gguf"
    shutil.copyfile(model_path, copy)
    parses: list[Path] = []
    real = gguf._read
    monkeypatch.setattr(gguf, "_read", lambda path: parses.append(path) or real(path))
    first = read_gguf(copy)
    assert read_gguf(copy) is first and len(parses) == 1
    copy.write_bytes(copy.read_bytes()[:1000])  # truncated: another version of the file
    with pytest.raises(InvalidModelError, match="truncated"):
        read_gguf(copy)
    with pytest.raises(InvalidModelError, match="truncated"):  # an error is never kept
        read_gguf(copy)
    assert len(parses) == 3
