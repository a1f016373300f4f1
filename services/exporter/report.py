"""The curation report written beside every exported dataset version.

One self-contained ``report.html`` with PNG plots in ``plots/`` next to it. It shows, in order:

- summary: free key/value lines (rows per split, records, auto-accepted, time range, ...);
- statuses: response statuses and record outcomes, as a table and a bar chart; with
  `publish.when`, the records auto-accepted and those people answered, per review reason;
- curation: per field, how many records have a final text differing from the original;
- ratings: the score distribution of every rating question;
- win rates: pairwise model comparisons (wins, losses, ties, win rate);
- agreement: percent agreement, Krippendorff's alpha and Cohen's kappa per question, plus the
  number of records flagged for disagreement; then how often the judge agreed with people on
  the records both answered, per question and band of the judge's margin (`judge_agreement`).

A section without data says "no data" and gets no plot (a stale plot from an earlier run in
the same directory is removed). The output is deterministic: the same ``ReportData`` gives
byte-identical files, so no timestamps, fixed figure sizes and dpi, no PNG "Software" tag and
sorted iteration over mappings (the summary keeps the caller's order on purpose).

Plots use ``matplotlib.figure.Figure`` with the Agg canvas directly, so nothing is registered
with pyplot's global figure manager and each figure is freed once it goes out of scope.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["AgreementRow", "JudgeAgreementRow", "ReportData", "WinRate", "write_report"]

DPI = 100
_LABEL_MAX = 40
_COLOR = "#4c72b0"
_COLOR_2 = "#dd8452"


@dataclass(frozen=True)
class AgreementRow:
    """Inter-annotator agreement for one question."""

    question: str
    level: str  # "nominal" | "ordinal" | "interval"
    units: int
    annotators: int
    percent: float | None  # share of agreeing pairs, 0..1
    alpha: float | None  # Krippendorff's alpha
    kappa: float | None  # Cohen's kappa (two annotators only)


@dataclass(frozen=True)
class JudgeAgreementRow:
    """How often the judge agreed with people on one question, per band of its margin."""

    question: str
    by_band: tuple[tuple[int, int], ...]  # (agreed, compared) per band of `MARGIN_BANDS`

    @property
    def total(self) -> tuple[int, int]:
        return sum(a for a, _ in self.by_band), sum(n for _, n in self.by_band)


# The bands of the judge's margin (best minus worst score), as `judge_agreement` counts them.
MARGIN_BANDS = ("< 1", "1-2", "2-3", ">= 3", "no margin")
JUDGE_AGREEMENT_TEXT = (
    "Records people answered that the judge also judged. Agreement: the judge's best response "
    "(its top score alone, or its pairwise winner) is the one people put first (top score or "
    "rank alone); on a rating, the judge's 1-5 score and people's mean rating round to the same "
    "point; on criteria, the judge found met exactly the criteria people chose; on a good/bad "
    "verdict, the judge's score says the same (4-5 good, 1-2 bad). A record where either side "
    "has no answer (a tie) is not compared. Margin: the judge's best minus worst score, the "
    "smallest over repeated judgments. With publish.when.margin_below, people see the records "
    "below the bound and an audit sample (sample_rate) of the rest: the bands at and above the "
    "bound say how often the auto-accepted records would have been right, those just below it "
    "whether the bound could be lower."
)


@dataclass(frozen=True)
class WinRate:
    """Pairwise outcome of ``model_a`` against ``model_b``."""

    model_a: str
    model_b: str
    wins: int  # a beat b
    losses: int
    ties: int

    @property
    def total(self) -> int:
        return self.wins + self.losses + self.ties

    @property
    def win_rate(self) -> float | None:
        """(wins + ties/2) / total, or None when there were no comparisons."""
        total = self.total
        return None if total == 0 else (self.wins + self.ties / 2) / total


@dataclass(frozen=True)
class ReportData:
    title: str  # e.g. "support / dpo / v3"
    summary: Mapping[str, int | str]  # shown first, in the caller's order
    status_counts: Mapping[str, int]  # response statuses and record outcomes
    changed_fields: Mapping[str, int]  # field -> records whose final text differs
    changed_of: int  # records the changed_fields are counted over
    rating_distributions: Mapping[str, Mapping[int, int]]  # question -> score -> count
    win_rates: Sequence[WinRate]
    agreement: Sequence[AgreementRow]
    disagreements: int  # records flagged for disagreement
    # Review reason -> (records auto-accepted, records people answered), from `Record.review`.
    review_reasons: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    judge_agreement: Sequence[JudgeAgreementRow] = ()
    # Imported preference pairs: outcome (kept, flipped, discarded, rewritten) -> records.
    preference_pairs: Mapping[str, int] = field(default_factory=dict)


# --- plots -------------------------------------------------------------------------------------


def _short(label: str) -> str:
    """A plot label: truncated, and with ``$`` escaped so matplotlib does not parse mathtext."""
    label = label if len(label) <= _LABEL_MAX else label[: _LABEL_MAX - 1] + "…"
    return label.replace("$", r"\$")


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path, format="png", dpi=DPI, metadata={"Software": None})
    fig.clear()


def _plot_statuses(counts: Mapping[str, int]) -> Figure | None:
    items = sorted(counts.items())
    if not items:
        return None
    fig = Figure(figsize=(max(4.0, 0.9 * len(items) + 1.5), 3.5), layout="constrained")
    ax = fig.add_subplot()
    # Positions, not categorical strings: equal (truncated) labels must not merge bars.
    ax.bar(range(len(items)), [v for _, v in items], color=_COLOR)
    ax.set_xticks(range(len(items)), [_short(k) for k, _ in items], rotation=30, ha="right")
    ax.set_ylabel("count")
    ax.set_title("Statuses")
    return fig


def _plot_changed_fields(changed: Mapping[str, int], of: int) -> Figure | None:
    items = _changed_items(changed)
    if not items:
        return None
    fig = Figure(figsize=(6.0, max(2.0, 0.4 * len(items) + 1.2)), layout="constrained")
    ax = fig.add_subplot()
    items.reverse()  # largest on top
    ax.barh(range(len(items)), [v for _, v in items], color=_COLOR)
    ax.set_yticks(range(len(items)), [_short(k) for k, _ in items])
    ax.set_xlabel(f"records changed (of {of})")
    ax.set_title("Curation: changed fields")
    return fig


def _plot_ratings(distributions: Mapping[str, Mapping[int, int]]) -> Figure | None:
    questions = sorted(q for q, dist in distributions.items() if dist)
    if not questions:
        return None
    ncols = min(3, len(questions))
    nrows = math.ceil(len(questions) / ncols)
    fig = Figure(figsize=(4.0 * ncols, 3.0 * nrows), layout="constrained")
    for i, question in enumerate(questions):
        dist = distributions[question]
        scores = list(range(min(dist), max(dist) + 1))
        ax: Axes = fig.add_subplot(nrows, ncols, i + 1)
        ax.bar(scores, [dist.get(s, 0) for s in scores], color=_COLOR)
        ax.set_xticks(scores)
        ax.set_xlabel("score")
        ax.set_ylabel("count")
        ax.set_title(f"{_short(question)} (n={sum(dist.values())})", fontsize="medium")
    return fig


def _plot_win_rates(win_rates: Sequence[WinRate]) -> Figure | None:
    rated = [(w, rate) for w in win_rates if (rate := w.win_rate) is not None]
    if not rated:
        return None
    fig = Figure(figsize=(6.5, max(2.0, 0.4 * len(rated) + 1.2)), layout="constrained")
    ax = fig.add_subplot()
    rated.reverse()  # first pair on top
    ax.barh(range(len(rated)), [rate for _, rate in rated], color=_COLOR)
    ax.set_yticks(range(len(rated)), [_short(f"{w.model_a} vs {w.model_b}") for w, _ in rated])
    ax.axvline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xlim(0.0, 1.0)
    ax.set_xlabel("win rate of the first model (ties count half)")
    ax.set_title("Win rates")
    return fig


def _plot_judge_agreement(rows: Sequence[JudgeAgreementRow]) -> Figure | None:
    """The judge's agreement with people per margin band, one bar group per question."""
    if not any(n for row in rows for _, n in row.by_band):
        return None
    fig = Figure(figsize=(max(5.0, 1.3 * len(MARGIN_BANDS) + 2.0), 3.5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.8 / len(rows)
    for k, row in enumerate(rows):
        points = [(i, a / n) for i, (a, n) in enumerate(row.by_band) if n]
        offset = (k - (len(rows) - 1) / 2) * width
        ax.bar(
            [i + offset for i, _ in points],
            [v for _, v in points],
            width,
            label=_short(row.question),
        )
    ax.set_xticks(range(len(MARGIN_BANDS)), [f"margin {b}" for b in MARGIN_BANDS])
    ax.set_ylim(0.0, 1.05)
    ax.set_ylabel("judge agrees with people")
    ax.set_title("Judge and people")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")
    return fig


def _plot_agreement(rows: Sequence[AgreementRow]) -> Figure | None:
    if not any(r.alpha is not None or r.percent is not None for r in rows):
        return None
    fig = Figure(figsize=(max(5.0, 1.2 * len(rows) + 2.0), 3.5), layout="constrained")
    ax = fig.add_subplot()
    width = 0.38
    values: list[float] = []
    series = (
        ("alpha", -width / 2, _COLOR, [r.alpha for r in rows]),
        ("percent", width / 2, _COLOR_2, [r.percent for r in rows]),
    )
    for name, offset, color, column in series:
        points = [(i + offset, v) for i, v in enumerate(column) if v is not None]
        values.extend(v for _, v in points)
        ax.bar([x for x, _ in points], [v for _, v in points], width, label=name, color=color)
    ax.set_xticks(range(len(rows)), [_short(r.question) for r in rows], rotation=30, ha="right")
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_ylim(min(0.0, *values) - 0.05, 1.05)
    ax.set_title("Agreement")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))
    return fig


# --- html --------------------------------------------------------------------------------------

_CSS = """
body { font-family: sans-serif; margin: 2em auto; max-width: 60em; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
img { max-width: 100%; display: block; margin: 0.6em 0; }
p.nodata { color: #888; font-style: italic; }
""".strip()

_NO_DATA = '<p class="nodata">no data</p>'


def _esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str | int]], text_cols: int = 1) -> str:
    """An html table; the first ``text_cols`` columns are text, the rest right-aligned."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f"<td>{_esc(c)}</td>" if i < text_cols else f'<td class="num">{_esc(c)}</td>'
            for i, c in enumerate(row)
        )
        + "</tr>\n"
        for row in rows
    )
    return f"<table>\n<tr>{head}</tr>\n{body}</table>"


def _changed_items(changed: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(changed.items(), key=lambda kv: (-kv[1], kv[0]))


def _share(count: int, of: int) -> str:
    return "n/a" if of <= 0 else f"{100 * count / of:.1f}%"


def _agreed(agreed: int, compared: int) -> str:
    return "-" if compared == 0 else f"{agreed}/{compared} ({100 * agreed / compared:.0f}%)"


def write_report(data: ReportData, out_dir: Path) -> Path:
    """Write ``out_dir/report.html`` and ``out_dir/plots/*.png``; return the html path."""
    plots_dir = out_dir / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    parts: list[str] = [f"<h1>{_esc(data.title)}</h1>"]

    def plot(name: str, alt: str, fig: Figure | None) -> str:
        path = plots_dir / f"{name}.png"
        if fig is None:
            path.unlink(missing_ok=True)  # a stale plot from an earlier run
            return ""
        _save(fig, path)
        return f'<img src="plots/{name}.png" alt="{_esc(alt)}">'

    def section(heading: str, *pieces: str, note: str = "") -> None:
        """A section; it says "no data" when it has neither a table nor a plot."""
        parts.append(f"<h2>{heading}</h2>")
        if note:
            parts.append(f"<p>{note}</p>")
        parts.extend([p for p in pieces if p] or [_NO_DATA])

    summary = list(data.summary.items())
    section("Summary", _table(["item", "value"], summary) if summary else "")

    statuses = sorted(data.status_counts.items())
    reasons = [(r, auto, people) for r, (auto, people) in sorted(data.review_reasons.items())]
    section(
        "Statuses",
        _table(["status", "count"], statuses) if statuses else "",
        plot("statuses", "bar chart of status counts", _plot_statuses(data.status_counts)),
        "<h3>Review reasons</h3>\n<p>Why each record was auto-accepted or went to people "
        "(the flow's <code>publish.when</code>).</p>\n"
        + _table(["reason", "auto-accepted", "answered by people"], reasons)
        if reasons
        else "",
        "<h3>Preference pairs</h3>\n<p>Imported chosen/rejected pairs: kept (the chosen "
        "response is still the best), flipped (the rejected one is now the best), discarded, or "
        "rewritten (a text people wrote beats both).</p>\n"
        + _table(["outcome", "records"], sorted(data.preference_pairs.items()))
        if data.preference_pairs
        else "",
    )

    changed = _changed_items(data.changed_fields)
    changed_rows = [(k, v, _share(v, data.changed_of)) for k, v in changed]
    section(
        "Curation: changed fields",
        _table(["field", "records changed", "share"], changed_rows) if changed else "",
        plot(
            "changed_fields",
            "bar chart of changed fields",
            _plot_changed_fields(data.changed_fields, data.changed_of),
        ),
        note=f"Counted over {data.changed_of} records." if changed else "",
    )

    section(
        "Ratings",
        plot(
            "ratings",
            "score distribution per rating question",
            _plot_ratings(data.rating_distributions),
        ),
    )

    win_rows = [
        (w.model_a, w.model_b, w.wins, w.losses, w.ties, _num(w.win_rate)) for w in data.win_rates
    ]
    win_header = ["model a", "model b", "wins", "losses", "ties", "win rate"]
    section(
        "Win rates",
        _table(win_header, win_rows, text_cols=2) if win_rows else "",
        plot("win_rates", "win rate per model pair", _plot_win_rates(data.win_rates)),
    )

    agreement_rows = [
        (a.question, a.level, a.units, a.annotators, _num(a.percent), _num(a.alpha), _num(a.kappa))
        for a in data.agreement
    ]
    agreement_header = ["question", "level", "units", "annotators", "percent", "alpha", "kappa"]
    judge_rows = [
        (row.question, _agreed(*row.total), *(_agreed(a, n) for a, n in row.by_band))
        for row in data.judge_agreement
    ]
    judge_header = ["question", "all", *(f"margin {b}" for b in MARGIN_BANDS)]
    section(
        "Agreement",
        _table(agreement_header, agreement_rows, text_cols=2) if agreement_rows else "",
        plot("agreement", "agreement per question", _plot_agreement(data.agreement)),
        f"<h3>Judge and people</h3>\n<p>{_esc(JUDGE_AGREEMENT_TEXT)}</p>\n"
        + _table(judge_header, judge_rows)
        if judge_rows
        else "",
        plot(
            "judge_agreement",
            "judge agreement with people per margin band",
            _plot_judge_agreement(data.judge_agreement),
        ),
        note=f"Records flagged for disagreement: {data.disagreements}",
    )

    body = "\n".join(parts)
    document = (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(data.title)}</title>\n<style>\n{_CSS}\n</style>\n</head>\n"
        f"<body>\n{body}\n</body>\n</html>\n"
    )
    html_path = out_dir / "report.html"
    html_path.write_text(document, encoding="utf-8", newline="\n")
    return html_path
