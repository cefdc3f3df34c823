"""Turn the runs into results: JSON (everything), CSV (one row per run), Markdown, PNG charts.

Every table shows medians over the runs of a setting; the JSON and CSV keep each run.
"""

from __future__ import annotations

import csv
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

if TYPE_CHECKING:
    from benchmarks.run import Run, Section, Setting

MiB = 1024 * 1024
GiB = 1024 * MiB
RSS_TARGET_MIB = 128
NOISY_CORES = 0.3  # as in run.py: other CPU on the machine above this marks a result "noisy"
TOOL_COLORS = {
    "persevere": "#1f77b4",
    "s5cmd": "#ff7f0e",
    "aws cli": "#2ca02c",
    "boto3": "#d62728",
    "obstore": "#9467bd",
    "rclone": "#8c564b",
}


def size_label(size: int) -> str:
    if size >= GiB and size % GiB == 0:
        return f"{size // GiB} GiB"
    return f"{size / MiB:g} MiB"


def aggregate(setting: Setting, runs: Sequence[Run]) -> dict[str, Any]:
    """Medians (and spread) over the successful runs of one setting."""
    ok = [r for r in runs if r.setting == setting and r.ok]
    base = {
        "tool": setting.tool,
        "file_size": setting.file_size,
        "concurrency": setting.concurrency,
        "part_size": setting.part_size,
        "link": setting.link,
        "runs": len(ok),
        "failed_runs": sum(1 for r in runs if r.setting == setting and not r.ok),
    }
    if not ok:
        return base
    gib = setting.file_size / GiB
    wall = statistics.median(r.wall_s for r in ok)
    return {
        **base,
        "wall_s": round(wall, 3),
        "wall_min_s": round(min(r.wall_s for r in ok), 3),
        "wall_max_s": round(max(r.wall_s for r in ok), 3),
        "mb_per_s": round(setting.file_size / 1e6 / wall, 1),
        "cpu_s": round(statistics.median(r.cpu_s for r in ok), 3),
        "cpu_s_per_gib": round(statistics.median(r.cpu_s for r in ok) / gib, 3),
        "server_cpu_s_per_gib": round(statistics.median(r.server_cpu_s for r in ok) / gib, 3),
        "other_cpu_cores": round(statistics.median(r.other_cpu_s / r.wall_s for r in ok), 3),
        "peak_rss_mib": round(statistics.median(r.peak_rss_mib for r in ok), 1),
        "peak_rss_max_mib": round(max(r.peak_rss_mib for r in ok), 1),
        "sampled_tree_rss_max_mib": round(max(r.sampled_tree_rss_mib for r in ok), 1),
        "max_processes": max(r.max_processes for r in ok),
    }


def run_row(run: Run) -> dict[str, Any]:
    s = run.setting
    return {
        "section": run.section,
        "tool": s.tool,
        "file_size": s.file_size,
        "concurrency": s.concurrency,
        "part_size": s.part_size,
        "link": s.link,
        "run": run.index + 1,
        "ok": run.ok,
        "wall_s": round(run.wall_s, 3),
        "mb_per_s": round(s.file_size / 1e6 / run.wall_s, 1) if run.wall_s else None,
        "user_s": round(run.user_s, 3),
        "sys_s": round(run.sys_s, 3),
        "cpu_s_per_gib": round(run.cpu_s / (s.file_size / GiB), 3),
        "peak_rss_mib": round(run.peak_rss_mib, 1),
        "sampled_tree_rss_mib": round(run.sampled_tree_rss_mib, 1),
        "max_processes": run.max_processes,
        "server_cpu_s": round(run.server_cpu_s, 3),
        "other_cpu_s": round(run.other_cpu_s, 3),
        "foreign_cpu_s": round(run.foreign_cpu_s, 3),
        "error": (run.error or "").splitlines()[0] if run.error else "",
    }


def write_all(
    out: Path,
    env: dict[str, Any],
    sections: Sequence[Section],
    runs: Sequence[Run],
    failures: Sequence[str],
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    measured = [r for r in runs if r.section not in ("preflight", "warmup")]
    shares = sorted(r.other_cpu_s / r.wall_s for r in measured if r.wall_s)
    foreign = sorted(r.foreign_cpu_s / r.wall_s for r in measured if r.wall_s)
    if shares:
        env["other_cpu_cores"] = {
            "median": round(statistics.median(shares), 3),
            "max": round(shares[-1], 3),
            "runs_over_0.3": sum(1 for s in shares if s > 0.3),
            "foreign_median": round(statistics.median(foreign), 3),
            "foreign_max": round(foreign[-1], 3),
        }
    tables = {}
    for section in sections:
        results = [aggregate(setting, measured) for setting in section.settings]
        results = [r for r in results if r["runs"] or r["failed_runs"]]  # skip settings not run
        if results:
            tables[section.name] = {"title": section.title, "results": results}
    json_path = out / "latest.json"
    json_path.write_text(
        json.dumps(
            {
                "environment": env,
                "sections": tables,
                "runs": [run_row(r) for r in measured],
                "failures": [f.splitlines()[0] for f in failures],
            },
            indent=1,
        )
        + "\n"
    )
    csv_path = out / "latest.csv"
    with csv_path.open("w", newline="") as f:
        rows = [run_row(r) for r in measured]
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["section"])
        writer.writeheader()
        writer.writerows(rows)
    md_path = out / "summary.md"
    md_path.write_text(markdown(env, tables, failures))
    paths = [json_path, csv_path, md_path]
    if "compare" in tables:
        paths.append(plot_compare(out / "compare.png", tables["compare"]))
    if {"concurrency", "part_size", "file_size"} & set(tables):
        paths.append(plot_sweeps(out / "sweeps.png", tables))
    if "link" in tables:
        paths.append(plot_link(out / "link.png", tables["link"], env["link"]["cap_mb_per_s"]))
    return paths


# --- Markdown --------------------------------------------------------------------------------


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _ratio(value: float | None, reference: float | None) -> str:
    if value is None or not reference:
        return "-"
    return f"{value / reference:.2f}x"


def _table(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def _failed_note(result: dict[str, Any]) -> str:
    """Marks a median that stands on failed runs or on runs the rest of the machine disturbed."""
    notes = []
    if result.get("failed_runs"):
        notes.append(f"{result['failed_runs']} failed")
    if result.get("other_cpu_cores", 0) > NOISY_CORES:
        notes.append("noisy")
    return f" ({', '.join(notes)})" if notes else ""


def markdown(env: dict[str, Any], tables: dict[str, Any], failures: Sequence[str]) -> str:
    parts = ["# persevere benchmarks\n"]
    parts.append(
        f"{env['date']} · `{env['machine']}` · {env['cpu_model']} · {env['cores']} cores · "
        f"{env['memory_gib']} GiB RAM · Linux {env['kernel']} · Python {env['python']} · "
        f"S3 server: SeaweedFS `weed mini` {env['s3_server']} on loopback, sharing the cores.\n\n"
        f"Median of {env['runs']} run(s) per setting, runs interleaved across tools"
        f"{' (**--quick smoke run**)' if env['quick'] else ''}; whole run "
        f"{env['elapsed_s'] / 60:.0f} min. MB = 10^6 bytes. CPU and RSS are the client's "
        f"(see benchmarks/README.md); the lowest RSS the measurement can show is "
        f"{env['rss_floor_mib']} MiB.\n"
    )
    if "other_cpu_cores" in env:
        noise = env["other_cpu_cores"]
        retried = env.get("noise", {})
        parts.append(
            f"\nNoise: besides the tool and the S3 server, the machine (kernel, harness, link "
            f"proxy, other people's processes) used a median {noise['median']:.2f} cores during "
            f"the kept runs (max {noise['max']:.2f}; {noise['runs_over_0.3']} run(s) above 0.3 "
            f"cores; other people's processes alone: median {noise['foreign_median']:.2f}, max "
            f"{noise['foreign_max']:.2f}). "
            f"{retried.get('runs_discarded_as_noisy', 0)} run(s) above 0.3 cores were discarded "
            f"and run again; {retried.get('waited_for_quiet_s', 0)} s were spent waiting for a "
            f"quiet machine.\n"
        )
    source = env.get("persevere_source")
    if source:
        parts.append(
            f"\npersevere measured: commit {source['commit']}, uncommitted changes in "
            f"persevere/: {source['uncommitted_changes']} (snapshot of persevere/ taken at the "
            f"start, sha256 {source['sources_sha256']}).\n"
        )
    parts.append("\n## Tools\n\n")
    parts.append(
        _table(
            ["tool", "version"],
            [[f"{tool}", env["versions"][tool]] for tool in env["versions"]]
            + [[tool, f"not run: {why}"] for tool, why in env["skipped"].items()],
        )
    )

    if "compare" in tables:
        results = tables["compare"]["results"]
        ref = next((r for r in results if r["tool"] == "persevere" and "wall_s" in r), None)
        rows = []
        for r in results:
            if "wall_s" not in r:
                rows.append([r["tool"], "FAILED", *["-"] * 8])
                continue
            rows.append(
                [
                    r["tool"],
                    _fmt(r["wall_s"]) + _failed_note(r),
                    _fmt(r["mb_per_s"], 0),
                    _ratio(r["wall_s"], ref and ref["wall_s"]),
                    _fmt(r["cpu_s_per_gib"]),
                    _ratio(r["cpu_s_per_gib"], ref and ref["cpu_s_per_gib"]),
                    _fmt(r["peak_rss_mib"], 0),
                    _ratio(r["peak_rss_mib"], ref and ref["peak_rss_mib"]),
                    _fmt(r["server_cpu_s_per_gib"]),
                ]
            )
        parts.append(f"\n## {tables['compare']['title']}\n\n")
        parts.append(
            _table(
                [
                    "tool",
                    "wall s",
                    "MB/s",
                    "wall vs persevere",
                    "client CPU s/GiB",
                    "CPU vs persevere",
                    "peak RSS MiB",
                    "RSS vs persevere",
                    "server CPU s/GiB",
                ],
                rows,
            )
        )
        parts.append(
            "\n\"vs persevere\" = the tool's value / persevere's: below 1.00x is faster, "
            'leaner or smaller than persevere. "noisy" marks a median over runs during which '
            f"the rest of the machine used more than {NOISY_CORES} cores.\n"
        )

    for name, param, label in [
        ("concurrency", "concurrency", lambda v: str(v)),
        ("part_size", "part_size", size_label),
        ("file_size", "file_size", size_label),
    ]:
        if name not in tables:
            continue
        results = tables[name]["results"]
        tools = list(dict.fromkeys(r["tool"] for r in results))
        values = sorted({r[param] for r in results})
        header = [param.replace("_", " ")]
        for tool in tools:
            header += [f"{tool} MB/s", f"{tool} CPU s/GiB", f"{tool} RSS MiB"]
        rows = []
        for value in values:
            row = [label(value)]
            for tool in tools:
                r = next(x for x in results if x["tool"] == tool and x[param] == value)
                if "wall_s" not in r:
                    row += ["FAILED", "-", "-"]
                else:
                    row += [
                        _fmt(r["mb_per_s"], 0) + _failed_note(r),
                        _fmt(r["cpu_s_per_gib"]),
                        _fmt(r["peak_rss_mib"], 0),
                    ]
            rows.append(row)
        parts.append(f"\n## {tables[name]['title']}\n\n")
        parts.append(_table(header, rows))
        if name == "file_size":
            parts.append(_fixed_plus_per_gib(results, tools))

    if "link" in tables:
        results = tables["link"]["results"]
        cap = env["link"]["cap_mb_per_s"]
        tools = list(dict.fromkeys(r["tool"] for r in results))
        header = ["concurrency"]
        for tool in tools:
            header += [f"{tool} MB/s", f"{tool} % of cap"]
        rows = []
        for conc in sorted({r["concurrency"] for r in results}):
            row = [str(conc)]
            for tool in tools:
                r = next(x for x in results if x["tool"] == tool and x["concurrency"] == conc)
                if "wall_s" not in r:
                    row += ["FAILED", "-"]
                else:
                    share = f"{100 * r['mb_per_s'] / cap:.0f} %"
                    row += [_fmt(r["mb_per_s"], 1) + _failed_note(r), share]
            rows.append(row)
        parts.append(f"\n## {tables['link']['title']}\n\n")
        parts.append(_table(header, rows))
        parts.append(
            "\nWall time includes process start-up and the link's round trips; % of cap = "
            "MB/s / cap.\n"
        )

    parts.append(_rss_check(tables))

    parts.append("\n## Command lines (c=8, 8 MiB parts)\n\n")
    for tool, command in env["commands"].items():
        parts.append(f"- {tool}: `{command}`\n")
    parts.append(
        "\nEach tool runs with every AWS_*/RCLONE_*/proxy variable removed from its environment, "
        "then only: AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_DEFAULT_REGION, "
        "AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE (empty files), AWS_EC2_METADATA_DISABLED "
        "(all but rclone); aws cli's AWS_CONFIG_FILE holds `s3 = max_concurrent_requests = 8, "
        "multipart_chunksize = 8MB, multipart_threshold = 8MB`; rclone gets RCLONE_CONFIG "
        "(an empty file) and RCLONE_CONFIG_BENCH_{TYPE=s3, PROVIDER=SeaweedFS, ACCESS_KEY_ID, "
        "SECRET_ACCESS_KEY, ENDPOINT, REGION}.\n"
    )

    parts.append("\n## Failures\n\n")
    if failures:
        parts += [f"- {f.splitlines()[0]}\n" for f in failures]
    else:
        parts.append("None: every upload exited 0 and HeadObject showed the full size.\n")
    return "".join(parts)


def _fixed_plus_per_gib(results: list[dict[str, Any]], tools: list[str]) -> str:
    """Split wall time and client CPU into a fixed cost and a per-GiB cost (least squares over
    the file sizes): start-up (interpreter, imports, create/complete) otherwise dominates the
    per-GiB figures of small files."""
    lines = []
    for metric, label in (("wall_s", "Wall time"), ("cpu_s", "Client CPU")):
        notes = []
        for tool in tools:
            points = [
                (r["file_size"] / GiB, r[metric])
                for r in results
                if r["tool"] == tool and metric in r
            ]
            if len(points) < 2:
                continue
            fit = statistics.linear_regression([p[0] for p in points], [p[1] for p in points])
            notes.append(f"{tool} {fit.intercept:.2f} s + {fit.slope:.2f} s/GiB")
        if notes:
            lines.append(f"{label} fitted as fixed + per GiB (least squares): {'; '.join(notes)}.")
    return "".join(f"\n{line}\n" for line in lines)


def _rss_check(tables: dict[str, Any]) -> str:
    rows = []
    for name in ("compare", "part_size"):
        for r in tables.get(name, {}).get("results", []):
            if (
                r["tool"] == "persevere"
                and r["concurrency"] == 8
                and r["part_size"] in (8 * MiB, 512 * MiB)
                and "peak_rss_max_mib" in r
            ):
                ok = r["peak_rss_max_mib"] < RSS_TARGET_MIB
                row = [
                    f"{size_label(r['file_size'])}, c=8, {size_label(r['part_size'])} parts",
                    _fmt(r["peak_rss_max_mib"], 1),
                    "yes" if ok else "**NO**",
                ]
                if row not in rows:
                    rows.append(row)
    if not rows:
        return ""
    return f"\n## persevere's memory target (< {RSS_TARGET_MIB} MiB peak RSS)\n\n" + _table(
        ["setting", "highest peak RSS of the runs, MiB", "under target"], rows
    )


# --- charts ----------------------------------------------------------------------------------


def _bar_labels(ax: Any, bars: Any, fmt: str, tops: Sequence[float] | None = None) -> None:
    """Value labels above the bars (or above ``tops``, e.g. the whiskers, when given)."""
    for i, bar in enumerate(bars):
        height = bar.get_height()
        ax.annotate(
            format(height, fmt),
            (bar.get_x() + bar.get_width() / 2, tops[i] if tops else height),
            ha="center",
            va="bottom",
            fontsize=8,
            xytext=(0, 2),
            textcoords="offset points",
        )


def plot_compare(path: Path, table: dict[str, Any]) -> Path:
    results = [r for r in table["results"] if "wall_s" in r]
    tools = [r["tool"] for r in results]
    colors = [TOOL_COLORS.get(t, "gray") for t in tools]
    x = range(len(tools))
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.8))

    ax = axes[0]
    walls = [r["wall_s"] for r in results]
    errs = [
        [r["wall_s"] - r["wall_min_s"] for r in results],
        [r["wall_max_s"] - r["wall_s"] for r in results],
    ]
    bars = ax.bar(x, walls, color=colors, yerr=errs, capsize=3)
    _bar_labels(ax, bars, ".1f", tops=[r["wall_max_s"] for r in results])
    ax.set_title("Wall time, s (median; whiskers min..max)")

    ax = axes[1]
    client = [r["cpu_s_per_gib"] for r in results]
    server = [r["server_cpu_s_per_gib"] for r in results]
    bars = ax.bar(x, client, color=colors, label="client")
    ax.bar(
        x, server, bottom=client, color="lightgray", hatch="//", edgecolor="gray", label="S3 server"
    )
    _bar_labels(ax, bars, ".2f")
    ax.set_title("CPU seconds per GiB (client; server stacked)")
    ax.legend(fontsize=8)

    ax = axes[2]
    bars = ax.bar(x, [r["peak_rss_mib"] for r in results], color=colors)
    _bar_labels(ax, bars, ".0f")
    ax.axhline(RSS_TARGET_MIB, color="red", linestyle="--", linewidth=1)
    ax.text(
        -0.4,
        RSS_TARGET_MIB,
        f"{RSS_TARGET_MIB} MiB target",
        color="red",
        ha="left",
        va="bottom",
        fontsize=8,
    )
    ax.set_title("Peak RSS of the client, MiB")

    for ax in axes:
        ax.set_xticks(list(x), tools, rotation=20)
        ax.margins(y=0.15)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(table["title"])
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_sweeps(path: Path, tables: dict[str, Any]) -> Path:
    specs = [
        ("concurrency", "concurrency", str),
        ("part_size", "part_size", size_label),
        ("file_size", "file_size", size_label),
    ]
    specs = [s for s in specs if s[0] in tables]
    metrics = [
        ("mb_per_s", "MB/s"),
        ("cpu_s_per_gib", "client CPU s/GiB"),
        ("peak_rss_mib", "peak RSS MiB"),
    ]
    fig, axes = plt.subplots(len(specs), 3, figsize=(15, 3.6 * len(specs)), squeeze=False)
    for row, (name, param, label) in enumerate(specs):
        results = [r for r in tables[name]["results"] if "wall_s" in r]
        values = sorted({r[param] for r in results})
        for col, (metric, metric_label) in enumerate(metrics):
            ax = axes[row][col]
            for tool in dict.fromkeys(r["tool"] for r in results):
                points = sorted((r[param], r[metric]) for r in results if r["tool"] == tool)
                ax.plot(
                    [values.index(p[0]) for p in points],
                    [p[1] for p in points],
                    marker="o",
                    label=tool,
                    color=TOOL_COLORS.get(tool, "gray"),
                )
            if metric == "peak_rss_mib":
                ax.axhline(
                    RSS_TARGET_MIB,
                    color="red",
                    linestyle="--",
                    linewidth=1,
                    label=f"{RSS_TARGET_MIB} MiB target",
                )
            ax.set_xticks(range(len(values)), [label(v) for v in values])
            ax.set_xlabel(param.replace("_", " "))
            ax.set_ylim(bottom=0)
            ax.margins(y=0.15)
            ax.grid(alpha=0.3)
            ax.set_title(f"{metric_label} vs {param.replace('_', ' ')}", fontsize=10)
            if col == 0:
                ax.legend(fontsize=8, loc="lower right")
            if metric == "peak_rss_mib":
                ax.legend(fontsize=8, loc="lower right")
    fig.suptitle(
        "Sweeps (median of runs); " + "; ".join(tables[s[0]]["title"] for s in specs), fontsize=9
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_link(path: Path, table: dict[str, Any], cap_mb_per_s: float) -> Path:
    results = [r for r in table["results"] if "wall_s" in r]
    concs = sorted({r["concurrency"] for r in results})
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    for n, tool in enumerate(dict.fromkeys(r["tool"] for r in results)):
        points = sorted((r["concurrency"], r["mb_per_s"]) for r in results if r["tool"] == tool)
        xs = [concs.index(c) for c, _ in points]
        ys = [v for _, v in points]
        ax.plot(xs, ys, marker="o", label=tool, color=TOOL_COLORS.get(tool, "gray"))
        for x, y in zip(xs, ys, strict=True):
            ax.annotate(
                f"{100 * y / cap_mb_per_s:.0f}%",
                (x, y),
                xytext=(0, -14 if n % 2 == 0 else 6),  # first tool below its line, next above
                textcoords="offset points",
                ha="center",
                fontsize=8,
                color=TOOL_COLORS.get(tool, "gray"),
            )
    ax.axhline(
        cap_mb_per_s, color="red", linestyle="--", linewidth=1, label=f"cap {cap_mb_per_s:g} MB/s"
    )
    ax.set_xticks(range(len(concs)), [str(c) for c in concs])
    ax.set_xlabel("concurrency")
    ax.set_ylabel("MB/s (labels: % of cap)")
    ax.set_ylim(0, cap_mb_per_s * 1.15)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(table["title"], fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
