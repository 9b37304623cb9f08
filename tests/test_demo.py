"""The demo's script mode, end to end through the real `parlons` command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARLONS = Path(sys.executable).parent / "parlons"


def run_demo(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PARLONS), "demo", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_script_mode_prints_the_whole_transcript_and_exits_0(tmp_path):
    result = run_demo("--script", str(ROOT / "docs" / "demo-script.txt"))
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Les nouvelles formes de gouvernance au sein de la « ville intelligente »" in out
    assert "alice ▸ /start" in out and "bob ▸ /start" in out
    assert "Nous avons ouvert une maison du projet" in out
    # bob (English) sees the English card, supports and comments alice's idea
    assert "New forms of governance" in out
    assert "👍 1" in out
    assert "Great idea, the same works in our district." in out
    # the final statistics in English: 2 contributions by alice, 1 support, 2 participants
    final = out.rsplit("Statistics", 1)[1]
    for figure in ("2 participants", "2 contributions", "1 support", "2 visitors"):
        assert figure in final, final


def test_script_mode_uses_a_fresh_database_each_time():
    first = run_demo("--script", str(ROOT / "docs" / "demo-script.txt"))
    second = run_demo("--script", str(ROOT / "docs" / "demo-script.txt"))
    assert first.returncode == second.returncode == 0
    assert first.stdout.count("#1") == second.stdout.count("#1")


def test_an_invalid_consultation_file_is_refused_with_its_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("slug: Not A Slug\ntitle: x\n", encoding="utf-8")
    script = tmp_path / "s.txt"
    script.write_text("/start\n", encoding="utf-8")
    result = run_demo("--script", str(script), "--consultation", str(bad))
    assert result.returncode == 1
    assert "bad.yaml: slug" in result.stderr
