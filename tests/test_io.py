"""Atomic writes: what a crash at each point leaves behind, and what the next write makes of it."""

from __future__ import annotations

from pathlib import Path

import pytest

from vqa.common.files import atomic_write_dir, atomic_write_text


def files(folder: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted(folder.iterdir())}


def write_set(**content: str):
    def write(tmp: str) -> None:
        for name, text in content.items():
            atomic_write_text(Path(tmp) / name, text)

    return write


def test_a_folder_is_swapped_whole(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    atomic_write_dir(out, write_set(a="1", b="1"))
    atomic_write_dir(out, write_set(a="2"))
    assert files(out) == {"a": "2"}, "the new set replaces the old one, no file of the old set remains"
    assert [p.name for p in tmp_path.iterdir()] == ["eval"], "no temp folder left"


def test_a_failed_write_keeps_the_old_set(tmp_path: Path) -> None:
    out = tmp_path / "eval"
    atomic_write_dir(out, write_set(a="1"))

    def half_then_fail(tmp: str) -> None:
        atomic_write_text(Path(tmp) / "a", "2")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write_dir(out, half_then_fail)
    assert files(out) == {"a": "1"} and [p.name for p in tmp_path.iterdir()] == ["eval"]


def test_a_kill_between_the_renames_loses_nothing(tmp_path: Path) -> None:
    """Killed after ``final -> .final.old`` and before ``tmp -> final``: the next write restores the old set first,
    so even a next write that fails leaves the old set in place."""
    out = tmp_path / "eval"
    atomic_write_dir(out, write_set(a="1"))
    out.rename(tmp_path / ".eval.old")  # the state a kill at that moment leaves
    (tmp_path / ".eval.abc123").mkdir()  # and the new set's temp folder, never trusted
    with pytest.raises(RuntimeError):
        atomic_write_dir(out, lambda tmp: (_ for _ in ()).throw(RuntimeError("killed again")))
    assert files(out) == {"a": "1"}
    assert [p.name for p in tmp_path.iterdir()] == ["eval"], "stale temp folders are removed"


def test_a_failure_after_the_first_rename_puts_the_old_set_back(tmp_path: Path, monkeypatch) -> None:
    """The second rename fails (disk, permissions): the old set is back in place before the error propagates."""
    out = tmp_path / "eval"
    atomic_write_dir(out, write_set(a="1"))
    real, failed = Path.rename, []

    def second_fails(self: Path, target: Path) -> Path:
        if Path(target) == out and self.name != ".eval.old" and not failed:  # the new set's tmp -> final
            failed.append(self)
            raise OSError("rename failed")
        return real(self, target)

    monkeypatch.setattr(Path, "rename", second_fails)
    with pytest.raises(OSError, match="rename failed"):
        atomic_write_dir(out, write_set(a="2"))
    monkeypatch.setattr(Path, "rename", real)
    assert failed and files(out) == {"a": "1"}
