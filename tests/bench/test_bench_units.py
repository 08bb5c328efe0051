"""Small helpers of the benchmark runner."""

from __future__ import annotations

from ranksam_ros.bench.runner import _shown_path


def test_report_paths_inside_the_working_directory_are_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    inside = tmp_path / "config" / "profile.xml"
    assert _shown_path(str(inside)) == "config/profile.xml"
    outside = tmp_path.parent / "elsewhere.xml"
    assert _shown_path(str(outside)) == str(outside)  # outside: kept as given
    assert _shown_path(None) is None
