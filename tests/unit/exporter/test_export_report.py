import re
from dataclasses import replace
from pathlib import Path

import matplotlib.image
import pytest

from services.exporter.report import AgreementRow, ReportData, WinRate, write_report

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
PLOTS = {"statuses", "changed_fields", "ratings", "win_rates", "agreement"}


def full_data() -> ReportData:
    return ReportData(
        title="support / dpo / v3",
        summary={"rows (train)": 120, "rows (test)": 14, "time range": "2024-05-01 .. 2024-05-31"},
        status_counts={"submitted": 134, "discarded": 9, "draft": 3},
        changed_fields={"response": 17, "prompt": 4},
        changed_of=134,
        rating_distributions={
            "helpfulness": {1: 2, 2: 5, 3: 11, 5: 30},
            "harmlessness": {0: 1, 1: 40},
        },
        win_rates=[
            WinRate("gpt-x", "llama-y", wins=30, losses=10, ties=4),
            WinRate("<script>alert(1)</script>", "m&m", wins=1, losses=2, ties=0),
        ],
        agreement=[
            AgreementRow("helpfulness", "ordinal", 40, 3, percent=0.8125, alpha=0.7431, kappa=None),
            AgreementRow("preference", "nominal", 38, 2, percent=0.9, alpha=-0.05, kappa=0.61234),
        ],
        disagreements=7,
    )


def empty_data() -> ReportData:
    return ReportData(
        title="empty / sft / v1",
        summary={},
        status_counts={},
        changed_fields={},
        changed_of=0,
        rating_distributions={},
        win_rates=[],
        agreement=[],
        disagreements=0,
    )


def sections(html: str) -> dict[str, str]:
    """Heading -> the html up to the next heading."""
    pieces = re.split(r"<h2>(.*?)</h2>", html)
    return dict(zip(pieces[1::2], pieces[2::2], strict=True))


# --- WinRate -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("wins", "losses", "ties", "expected"),
    [
        (3, 1, 0, 0.75),
        (1, 1, 2, 0.5),
        (0, 3, 1, 0.125),
        (0, 0, 4, 0.5),
        (5, 0, 0, 1.0),
        (0, 0, 0, None),
    ],
)
def test_win_rate(wins: int, losses: int, ties: int, expected: float | None) -> None:
    rate = WinRate("a", "b", wins=wins, losses=losses, ties=ties).win_rate
    assert rate == (None if expected is None else pytest.approx(expected))


# --- files -------------------------------------------------------------------------------------


def test_writes_html_and_valid_pngs(tmp_path: Path) -> None:
    html_path = write_report(full_data(), tmp_path / "report")
    assert html_path == tmp_path / "report" / "report.html"
    html = html_path.read_text(encoding="utf-8")

    plots = sorted((tmp_path / "report" / "plots").iterdir())
    assert {p.stem for p in plots} == PLOTS
    for png in plots:
        assert png.suffix == ".png"
        assert png.read_bytes().startswith(PNG_SIGNATURE)
        pixels = matplotlib.image.imread(png)
        height, width = pixels.shape[:2]
        assert 150 <= height <= 2000 and 300 <= width <= 2000, (png.name, pixels.shape)
        assert f'<img src="plots/{png.name}" alt="' in html

    for src in re.findall(r'<img src="([^"]+)"', html):
        assert (html_path.parent / src).is_file()


def test_html_tables_show_numbers(tmp_path: Path) -> None:
    html = write_report(full_data(), tmp_path).read_text(encoding="utf-8")
    by_heading = sections(html)

    agreement = by_heading["Agreement"]
    for number in ("0.743", "-0.050", "0.812", "0.900", "0.612", "n/a"):
        assert f">{number}</td>" in agreement
    assert "Records flagged for disagreement: 7" in agreement

    win_rates = by_heading["Win rates"]
    assert ">0.727</td>" in win_rates  # (30 + 4/2) / 44
    assert ">0.333</td>" in win_rates
    assert ">30</td>" in win_rates and ">10</td>" in win_rates

    statuses = by_heading["Statuses"]
    assert '<td>submitted</td><td class="num">134</td>' in statuses
    assert statuses.index("discarded") < statuses.index("draft") < statuses.index("submitted")

    changed = by_heading["Curation: changed fields"]
    assert "Counted over 134 records." in changed
    assert changed.index("response") < changed.index("prompt")  # most changed first
    assert ">12.7%</td>" in changed  # 17 / 134

    assert "<td>time range</td>" in by_heading["Summary"]
    assert "no data" not in html
    assert "<title>support / dpo / v3</title>" in html


def test_user_strings_are_escaped(tmp_path: Path) -> None:
    data = replace(
        full_data(),
        title='<b onmouseover="x">t</b>',
        summary={"<i>key</i>": "<img src=x>"},
        status_counts={"<u>status</u>": 1},
        changed_fields={"<em>field</em>": 1},
        agreement=[AgreementRow("<q>question</q>", "<lvl>", 3, 2, 1.0, None, None)],
    )
    html = write_report(data, tmp_path).read_text(encoding="utf-8")
    for raw in ("<script>", '<b onmouseover="x">', "<i>", "<img src=x>", "<u>", "<em>", "<q>"):
        assert raw not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "m&amp;m" in html
    assert "&lt;b onmouseover=&quot;x&quot;&gt;t&lt;/b&gt;" in html
    assert "&lt;q&gt;question&lt;/q&gt;" in html


def test_empty_data_says_no_data_and_writes_no_plots(tmp_path: Path) -> None:
    html = write_report(empty_data(), tmp_path).read_text(encoding="utf-8")
    by_heading = sections(html)
    assert len(by_heading) == 6
    for heading, body in by_heading.items():
        assert "no data" in body, heading
        assert "<img" not in body and "<table" not in body, heading
    assert list((tmp_path / "plots").iterdir()) == []


def test_one_empty_section_skips_only_its_plot(tmp_path: Path) -> None:
    write_report(full_data(), tmp_path)
    html = write_report(replace(full_data(), changed_fields={}), tmp_path).read_text("utf-8")
    assert "no data" in sections(html)["Curation: changed fields"]
    assert html.count("no data") == 1
    # the plot from the first run in the same directory is gone
    assert {p.stem for p in (tmp_path / "plots").iterdir()} == PLOTS - {"changed_fields"}


def test_table_without_plottable_values(tmp_path: Path) -> None:
    data = replace(
        full_data(),
        win_rates=[WinRate("a", "b", 0, 0, 0)],
        agreement=[AgreementRow("q", "interval", 0, 0, None, None, None)],
        rating_distributions={"empty question": {}},
    )
    html = write_report(data, tmp_path).read_text(encoding="utf-8")
    by_heading = sections(html)
    for heading in ("Win rates", "Agreement"):
        assert "<table" in by_heading[heading] and ">n/a</td>" in by_heading[heading]
        assert "<img" not in by_heading[heading]
    assert "no data" in by_heading["Ratings"]
    assert {p.stem for p in (tmp_path / "plots").iterdir()} == {"statuses", "changed_fields"}


def test_awkward_labels_render(tmp_path: Path) -> None:
    """Dollar signs (mathtext), long and equal-after-truncation labels must not break plots."""
    long = "x" * 60
    data = replace(
        full_data(),
        status_counts={f"{long}1": 1, f"{long}2": 2, "costs $5 and $6": 3, r"fee $\nope$": 4},
        rating_distributions={"price in $": {1: 1}, long: {3: 2, 7: 1}},
    )
    write_report(data, tmp_path)
    assert {p.stem for p in (tmp_path / "plots").iterdir()} == PLOTS


# --- determinism -------------------------------------------------------------------------------


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_output_is_byte_identical_across_runs(tmp_path: Path) -> None:
    write_report(full_data(), tmp_path / "a")
    # same content, mappings built in another order
    data = full_data()
    shuffled = replace(
        data,
        status_counts=dict(reversed(list(data.status_counts.items()))),
        changed_fields=dict(reversed(list(data.changed_fields.items()))),
        rating_distributions={
            q: dict(reversed(list(d.items())))
            for q, d in reversed(list(data.rating_distributions.items()))
        },
    )
    write_report(shuffled, tmp_path / "b")

    first, second = tree_bytes(tmp_path / "a"), tree_bytes(tmp_path / "b")
    assert set(first) == {"report.html"} | {f"plots/{name}.png" for name in PLOTS}
    assert first.keys() == second.keys()
    for name in first:
        assert first[name] == second[name], name


def test_no_timestamps_or_software_tag(tmp_path: Path) -> None:
    write_report(full_data(), tmp_path)
    for png in (tmp_path / "plots").iterdir():
        data = png.read_bytes()
        assert b"Software" not in data and b"tIME" not in data, png.name
