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


# --------------------------------------------------------------------------- the demo's clock

EXAMPLE = ROOT / "consultations" / "example-minimal.yaml"
VISIT = "/start\n/accept\n/participate\nMore benches along the river.\n1\n"


def test_another_consultation_runs_while_it_is_open(tmp_path):
    """The example consultation (2 March - 30 April 2026) used to run at the seed's date in
    2019, where every answer was refused as 'not open yet'."""
    script = tmp_path / "visit.txt"
    script.write_text(VISIT, encoding="utf-8")
    result = run_demo("--script", str(script), "--consultation", str(EXAMPLE))
    assert result.returncode == 0, result.stderr
    assert "The demo's clock starts at 2026-04-18T10:00+01:00" in result.stderr
    assert "“example-minimal” is open from 2026-03-02 09:00 to 2026-04-30 18:00" in result.stderr
    assert "Votre contribution #1 est publiée" in result.stdout
    assert "Question 2 sur 2" in result.stdout


def test_a_consultation_open_today_runs_now(tmp_path):
    from datetime import UTC, datetime, timedelta

    import yaml

    now = datetime.now(UTC)
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    data["timezone"] = "UTC"
    data["opens_at"] = (now - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S")
    data["closes_at"] = (now + timedelta(days=30)).strftime("%Y-%m-%dT%H:%M:%S")
    data.pop("translations", None)
    today = tmp_path / "today.yaml"
    today.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    script = tmp_path / "visit.txt"
    script.write_text(VISIT, encoding="utf-8")
    result = run_demo("--script", str(script), "--consultation", str(today))
    assert result.returncode == 0, result.stderr
    started = result.stderr.split("The demo's clock starts at ", 1)[1][:10]
    assert started in {now.strftime("%Y-%m-%d"), datetime.now(UTC).strftime("%Y-%m-%d")}
    assert "contribution #1" in result.stdout


def test_demo_start_rules():
    from datetime import UTC, datetime

    from bot.cli import demo_start
    from bot.consultation_file import load_consultation_file

    seed = load_consultation_file(ROOT / "consultations" / "ville-intelligente.yaml")
    later = datetime(2030, 1, 1, tzinfo=UTC)
    assert demo_start(seed, None, later).isoformat() == "2019-08-19T10:00:00+02:00"
    inside = datetime(2018, 6, 1, 12, tzinfo=UTC)
    assert demo_start(seed, None, inside) == inside
    assert demo_start(seed, "2018-03-01T09:00", later).isoformat() == "2018-03-01T09:00:00+01:00"
    data = seed.to_json() | {"opens_at": "2030-05-01T09:00:00", "closes_at": "2030-05-03T09:00:00"}
    short = type(seed).from_json(data)
    start = demo_start(short, None, later)
    assert short.opens_at_utc < start < short.closes_at_utc
    assert start.isoformat() == "2030-05-02T09:00:00+02:00"
