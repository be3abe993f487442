"""One atomic-write helper: the new file or the old one, never half of one, and no stray temporary files."""

from __future__ import annotations

import pytest

from perfmodel.atomic import atomic_path, write_text_atomic


def test_success_replaces_the_file_and_leaves_nothing_else(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    write_text_atomic(target, "new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_failure_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_failed_plot_leaves_no_stray_file(tmp_path):
    from perfmodel.errors import UserError
    from perfmodel.analysis.plots import save_figure
    import matplotlib.pyplot as plt

    fig = plt.figure()
    with pytest.raises(UserError):
        save_figure(fig, plt, tmp_path / "plot.unknownformat")
    assert list(tmp_path.iterdir()) == []


def test_modes_new_files_get_the_umask_replaced_ones_keep_theirs_even_read_only(tmp_path):
    import os

    mask = os.umask(0o022)
    try:
        new = write_text_atomic(tmp_path / "new.yaml", "a: 1\n")
        assert new.stat().st_mode & 0o777 == 0o644  # not mkstemp's 0600
        kept = tmp_path / "kept.yaml"
        kept.write_text("old")
        kept.chmod(0o440)
        write_text_atomic(kept, "new")
        assert kept.read_text() == "new" and kept.stat().st_mode & 0o777 == 0o440
    finally:
        os.umask(mask)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept.yaml", "new.yaml"]


def test_a_symlinked_target_is_updated_and_the_link_kept(tmp_path):
    target = tmp_path / "real.txt"
    target.write_text("old")
    link = tmp_path / "link.txt"
    link.symlink_to(target)
    write_text_atomic(link, "new")
    assert link.is_symlink() and target.read_text() == "new"
