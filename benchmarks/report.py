"""Turn the runs into results: JSON (everything), CSV (one row per run), Markdown, PNG charts.

Every table shows medians over the runs of a setting (with the runs' [min-max] where it says
so); the JSON and CSV keep each run. ``summary.md`` opens with issue 12's targets, each met or
not with its numbers (``targets.py``).
"""

from __future__ import annotations

import csv
import dataclasses
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from benchmarks import targets
from benchmarks.model import (
    FILE,
    NOISY_CORES,
    SEAWEEDFS,
    STATUS,
    GiB,
    MiB,
    Run,
    Section,
    Setting,
    size_label,
)

RSS_TARGET_MIB = 128
STREAM_RSS_BOUND_MIB = 256  # issue 11: a stream's peak RSS at the defaults
TOOL_COLORS = {
    "persevere": "#1f77b4",
    "s5cmd": "#ff7f0e",
    "aws cli": "#2ca02c",
    "boto3": "#d62728",
    "obstore": "#9467bd",
    "rclone": "#8c564b",
}


def aggregate(setting: Setting, runs: Sequence[Run]) -> dict[str, Any]:
    """Medians (and spread) over the successful runs of one setting."""
    ok = [r for r in runs if r.setting == setting and r.ok]
    base = {
        "tool": setting.tool,
        "mode": setting.mode,
        "server": setting.server,
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
    result = {**base}

    def spread(name: str, values: list[float], digits: int = 3) -> None:
        result[name] = round(statistics.median(values), digits)
        result[f"{name}_min"] = round(min(values), digits)
        result[f"{name}_max"] = round(max(values), digits)

    spread("wall_s", [r.wall_s for r in ok])
    # Each run's wall time by its index: run i of every tool ran back to back (interleaved),
    # so ratios of run i to run i cancel most of the minute-to-minute drift of a shared machine.
    by_index = {r.index: r.wall_s for r in ok}
    result["wall_s_runs"] = [
        round(by_index[i], 3) if i in by_index else None for i in range(max(by_index) + 1)
    ]
    spread("cpu_s", [r.cpu_s for r in ok])
    spread("peak_rss_mib", [r.peak_rss_mib for r in ok], 1)
    if gib:
        result["mb_per_s"] = round(setting.file_size / 1e6 / result["wall_s"], 1)
        spread("cpu_s_per_gib", [r.cpu_s / gib for r in ok])
        result["server_cpu_s_per_gib"] = round(
            statistics.median(r.server_cpu_s for r in ok) / gib, 3
        )
    result["server_cpu_s"] = round(statistics.median(r.server_cpu_s for r in ok), 3)
    result["producer_cpu_s"] = round(statistics.median(r.producer_cpu_s for r in ok), 3)
    result["other_cpu_cores"] = round(statistics.median(r.other_cpu_s / r.wall_s for r in ok), 3)
    # Everything the machine did during the run, in cores: near the core count, the run was
    # bound by CPU (on this machine mostly the S3 server's), not by the client waiting.
    result["machine_busy_cores"] = round(
        statistics.median(
            (r.cpu_s + r.server_cpu_s + r.other_cpu_s + r.producer_cpu_s) / r.wall_s for r in ok
        ),
        2,
    )
    result["peak_rss_max_mib"] = result["peak_rss_mib_max"]  # older readers of latest.json
    result["sampled_tree_rss_max_mib"] = round(max(r.sampled_tree_rss_mib for r in ok), 1)
    result["max_processes"] = max(r.max_processes for r in ok)
    result["verified"] = sorted({r.verified for r in ok if r.verified})
    return result


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
    checks = targets.check_all(tables, env)
    json_path = out / "latest.json"
    json_path.write_text(
        json.dumps(
            {
                "environment": env,
                "sections": tables,
                "targets": [dataclasses.asdict(c) for c in checks],
                "runs": [r.to_row() for r in measured],
                "failures": [f.splitlines()[0] for f in failures],
            },
            indent=1,
        )
        + "\n"
    )
    csv_path = out / "latest.csv"
    with csv_path.open("w", newline="") as f:
        rows = [r.to_row() for r in measured]
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["section"])
        writer.writeheader()
        writer.writerows(rows)
    md_path = out / "summary.md"
    md_path.write_text(markdown(env, tables, failures, checks))
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


def _spread(r: dict[str, Any], metric: str, digits: int = 2) -> str:
    """``6.26 [5.90-7.10]``: the median and the runs' range."""
    if metric not in r:
        return "-"
    low, high = r.get(f"{metric}_min"), r.get(f"{metric}_max")
    text = f"{r[metric]:.{digits}f}"
    if low is not None and high is not None and r.get("runs", 0) > 1:
        text += f" [{low:.{digits}f}-{high:.{digits}f}]"
    return text


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


def _header(env: dict[str, Any]) -> str:
    parts = ["# persevere benchmarks\n\n"]
    parts.append(
        f"{env['date']} · `{env['machine']}` · {env['cpu_model']} · {env['cores']} cores · "
        f"{env['memory_gib']} GiB RAM · Linux {env['kernel']} · Python {env['python']} · "
        f"S3 server: SeaweedFS `weed mini` {env['s3_server']} on loopback, sharing the cores "
        f"(a fresh one per section).\n\n"
        f"Median of {env['runs']} run(s) per setting with [min-max] where shown, runs "
        f"interleaved across tools{' (**--quick smoke run**)' if env['quick'] else ''}; whole "
        f"run {env['elapsed_s'] / 60:.0f} min. MB = 10^6 bytes. CPU and RSS are the client's "
        f"(see benchmarks/README.md); the lowest RSS the measurement can show is "
        f"{env['rss_floor_mib']} MiB.\n"
    )
    if "other_cpu_cores" in env:
        noise = env["other_cpu_cores"]
        retried = env.get("noise", {})
        load = env.get("load_average")
        parts.append(
            f"\nNoise: besides the tool and the S3 server, the machine (kernel, harness, link "
            f"proxy, other people's processes) used a median {noise['median']:.2f} cores during "
            f"the kept runs (max {noise['max']:.2f}; {noise['runs_over_0.3']} run(s) above 0.3 "
            f"cores; other people's processes alone: median {noise['foreign_median']:.2f}, max "
            f"{noise['foreign_max']:.2f}). "
            f"{retried.get('runs_discarded_as_noisy', 0)} run(s) above 0.3 cores were discarded "
            f"and run again; {retried.get('waited_for_quiet_s', 0)} s were spent waiting for a "
            f"quiet machine."
            + (
                f" Load average (1 min) at the start and the end: {load['start']:.2f}, "
                f"{load['end']:.2f}."
                if load
                else ""
            )
            + "\n"
        )
    source = env.get("persevere_source")
    if source:
        changed = source.get("persevere_changed_in")
        parts.append(
            f"\npersevere measured: commit {source['commit']}"
            + (f" (persevere/ last changed in {changed[:72]})" if changed else "")
            + f", uncommitted changes in persevere/: {source['uncommitted_changes']} (snapshot "
            f"of persevere/ taken at the start, sha256 {source['sources_sha256']}).\n"
        )
    return "".join(parts)


def _targets(checks: Sequence[targets.Check]) -> str:
    if not checks:
        return ""
    rows = [[c.target, f"**{c.verdict}**" if c.met is False else c.verdict, c.measured]
            for c in checks]  # fmt: skip
    met = sum(1 for c in checks if c.met)
    measured = sum(1 for c in checks if c.met is not None)
    return f"\n## Issue 12's targets: {met} of {measured} measured met\n\n" + _table(
        ["target", "verdict", "measured (median [min-max] of this run)"], rows
    )


def _compare(table: dict[str, Any]) -> str:
    results = table["results"]
    ref = next((r for r in results if r["tool"] == "persevere" and "wall_s" in r), None)
    rows = []
    for r in results:
        if "wall_s" not in r:
            rows.append([r["tool"], "FAILED", *["-"] * 9])
            continue
        rows.append(
            [
                r["tool"],
                _spread(r, "wall_s") + _failed_note(r),
                _fmt(r["mb_per_s"], 0),
                _ratio(r["wall_s"], ref and ref["wall_s"]),
                _spread(r, "cpu_s_per_gib"),
                _ratio(r["cpu_s_per_gib"], ref and ref["cpu_s_per_gib"]),
                _spread(r, "peak_rss_mib", 0),
                _ratio(r["peak_rss_mib"], ref and ref["peak_rss_mib"]),
                _fmt(r["server_cpu_s_per_gib"]),
                _fmt(r.get("machine_busy_cores")),
            ]
        )
    header = [
        "tool",
        "wall s",
        "MB/s",
        "wall vs persevere",
        "client CPU s/GiB",
        "CPU vs persevere",
        "peak RSS MiB",
        "RSS vs persevere",
        "server CPU s/GiB",
        "machine busy, cores",
    ]
    return (
        f"\n## {table['title']}\n\n"
        + _table(header, rows)
        + "\n\"vs persevere\" = the tool's value / persevere's (medians): below 1.00x is "
        'faster, leaner or smaller than persevere. "noisy" marks a median over runs during '
        f'which the rest of the machine used more than {NOISY_CORES} cores. "machine busy" = '
        "(client + server + everything else's CPU) / wall: at the core count the run was bound "
        "by CPU, most of it the S3 server's.\n"
    )


def _sweep(name: str, table: dict[str, Any]) -> str:
    param, label = {
        "concurrency": ("concurrency", str),
        "part_size": ("part_size", size_label),
        "file_size": ("file_size", size_label),
    }[name]
    results = table["results"]
    tools = list(dict.fromkeys(r["tool"] for r in results))
    values = sorted({r[param] for r in results})
    header = [param.replace("_", " ")]
    for tool in tools:
        header += [f"{tool} MB/s", f"{tool} CPU s/GiB", f"{tool} RSS MiB"]
    rows = []
    for value in values:
        row = [label(value)]
        for tool in tools:
            r = next((x for x in results if x["tool"] == tool and x[param] == value), None)
            if r is None or "wall_s" not in r:
                row += ["FAILED" if r else "-", "-", "-"]
            else:
                row += [
                    _fmt(r["mb_per_s"], 0) + _failed_note(r),
                    _fmt(r["cpu_s_per_gib"]),
                    _fmt(r["peak_rss_mib"], 0),
                ]
        rows.append(row)
    text = f"\n## {table['title']}\n\n" + _table(header, rows)
    if name == "file_size":
        text += _per_size_walls(results, tools) + _fixed_plus_per_gib(results, tools)
    return text


def _per_size_walls(results: list[dict[str, Any]], tools: list[str]) -> str:
    """Wall time with its range per size, and each tool against persevere (interleaved)."""
    rows = []
    for size in sorted({r["file_size"] for r in results}):
        here = {r["tool"]: r for r in results if r["file_size"] == size and "wall_s" in r}
        ref = here.get("persevere")
        row = [size_label(size)]
        for tool in tools:
            r = here.get(tool)
            row.append(
                "-"
                if r is None
                else _spread(r, "wall_s") + f" ({_ratio(r['wall_s'], ref and ref['wall_s'])})"
            )
        rows.append(row)
    return "\nWall s, median [min-max] (vs persevere):\n\n" + _table(["file size", *tools], rows)


def _sink(tables: dict[str, Any]) -> str:
    """Each client on the null sink beside the same upload on SeaweedFS."""
    sink = [r for r in tables["sink"]["results"] if "wall_s" in r]
    on_weed = {
        (r["tool"], r["file_size"]): r
        for t in tables.values()
        for r in t["results"]
        if "wall_s" in r
        and r.get("server", SEAWEEDFS) == SEAWEEDFS
        and r.get("mode", FILE) == FILE
        and not r["link"]
        and r["concurrency"] == 8
        and r["part_size"] == 8 * MiB
    }
    rows = []
    for r in sink:
        weed = on_weed.get((r["tool"], r["file_size"]))
        rows.append(
            [
                size_label(r["file_size"]),
                r["tool"],
                _spread(r, "wall_s"),
                _spread(r, "cpu_s_per_gib"),
                _fmt(r["peak_rss_mib"], 0),
                _fmt(r["server_cpu_s_per_gib"]),
                _spread(weed, "cpu_s_per_gib") if weed else "-",
                _ratio(weed["cpu_s_per_gib"], r["cpu_s_per_gib"]) if weed else "-",
            ]
        )
    header = [
        "file",
        "tool",
        "sink wall s",
        "sink client CPU s/GiB",
        "sink peak RSS MiB",
        "sink server CPU s/GiB",
        "SeaweedFS client CPU s/GiB",
        "SeaweedFS / sink",
    ]
    return (
        f"\n## {tables['sink']['title']}\n\n"
        + _table(header, rows)
        + "\nThe sink (nginx, benchmarks/nullsink.py) reads every byte and stores nothing: "
        "each client's ceiling. The SeaweedFS column is the same setting's median from the "
        "sections above (another server, minutes apart: CPU figures travel, wall times do "
        "not).\n"
    )


def _startup(table: dict[str, Any]) -> str:
    rows = []
    for r in table["results"]:
        what = "`upload status`" if r.get("mode") == STATUS else "0-byte upload"
        if "wall_s" not in r:
            rows.append([r["tool"], what, "FAILED", "-", "-"])
            continue
        rows.append(
            [
                r["tool"],
                what,
                _spread(r, "cpu_s", 3) + _failed_note(r),
                _spread(r, "wall_s"),
                _fmt(r["peak_rss_mib"], 0),
            ]
        )
    return (
        f"\n## {table['title']}\n\n"
        + _table(["tool", "command", "CPU s", "wall s", "peak RSS MiB"], rows)
        + "\nThe fixed cost of a run: interpreter or binary start-up, imports, the client, the "
        "requests of an empty upload (Create, UploadPart, Complete or one PutObject) or of "
        "`persevere upload status` (journal, ListParts) of an upload in progress.\n"
    )


def _link(table: dict[str, Any], cap: float) -> str:
    results = table["results"]
    tools = list(dict.fromkeys(r["tool"] for r in results))
    header = ["concurrency"]
    for tool in tools:
        header += [f"{tool} MB/s", f"{tool} % of cap"]
    rows = []
    for conc in sorted({r["concurrency"] for r in results}):
        row = [str(conc)]
        for tool in tools:
            r = next((x for x in results if x["tool"] == tool and x["concurrency"] == conc), None)
            if r is None or "wall_s" not in r:
                row += ["FAILED" if r else "-", "-"]
            else:
                share = f"{100 * r['mb_per_s'] / cap:.0f} %"
                row += [_fmt(r["mb_per_s"], 1) + _failed_note(r), share]
        rows.append(row)
    return (
        f"\n## {table['title']}\n\n"
        + _table(header, rows)
        + "\nWall time includes process start-up and the link's round trips; % of cap = "
        "MB/s / cap.\n"
    )


def _link_large(table: dict[str, Any], cap: float) -> str:
    results = [r for r in table["results"] if "wall_s" in r]
    rows = []
    startup_rows = []
    for r in results:
        if r["file_size"] == 0:
            startup_rows.append(r)
            continue
        rows.append(
            [
                r["tool"],
                size_label(r["file_size"]),
                _spread(r, "wall_s") + _failed_note(r),
                _fmt(r["mb_per_s"], 1),
                f"{100 * r['mb_per_s'] / cap:.1f} %",
                _fmt(r["cpu_s_per_gib"]),
                _fmt(r["peak_rss_mib"], 0),
            ]
        )
    text = f"\n## {table['title']}\n\n" + _table(
        ["tool", "file", "wall s", "MB/s", "% of cap", "client CPU s/GiB", "peak RSS MiB"], rows
    )
    for r in startup_rows:
        large = next((x for x in results if x["tool"] == r["tool"] and x["file_size"] > 0), None)
        share = f", {100 * r['wall_s'] / large['wall_s']:.1f} % of its run" if large else ""
        text += (
            f"\nStart-up, {r['tool']}: a 0-byte upload through the same link takes "
            f"{_spread(r, 'wall_s')} s of wall time ({_spread(r, 'cpu_s', 3)} CPU-s){share}.\n"
        )
    return text


def _streams(table: dict[str, Any]) -> str:
    results = table["results"]
    ref = next((r for r in results if r["tool"] == "persevere" and "wall_s" in r), None)
    rows = []
    for r in results:
        if "wall_s" not in r:
            rows.append([r["tool"], "FAILED", *["-"] * 6])
            continue
        rows.append(
            [
                r["tool"],
                _spread(r, "wall_s") + _failed_note(r),
                _fmt(r["mb_per_s"], 0),
                _ratio(r["wall_s"], ref and ref["wall_s"]),
                _spread(r, "cpu_s_per_gib"),
                _spread(r, "peak_rss_mib", 0),
                _fmt(r["producer_cpu_s"]),
                _fmt(r["server_cpu_s_per_gib"]),
            ]
        )
    header = [
        "tool",
        "wall s",
        "MB/s",
        "wall vs persevere",
        "client CPU s/GiB",
        "peak RSS MiB",
        "`cat` CPU s",
        "server CPU s/GiB",
    ]
    verified = sorted({v for r in results for v in r.get("verified", [])})
    return (
        f"\n## {table['title']}\n\n"
        + _table(header, rows)
        + "\n`cat FILE | tool`: the tool reads a pipe (the harness forks `cat` beside it; "
        "`cat`'s CPU is its own column, not the tool's). Every upload was checked: "
        f"{'; '.join(verified) or 'see failures'}. persevere's bound for a stream's peak RSS "
        f"at the defaults is {STREAM_RSS_BOUND_MIB} MiB (issue 11).\n"
    )


def markdown(
    env: dict[str, Any],
    tables: dict[str, Any],
    failures: Sequence[str],
    checks: Sequence[targets.Check] = (),
) -> str:
    parts = [_header(env), _targets(checks)]
    parts.append("\n## Tools\n\n")
    parts.append(
        _table(
            ["tool", "version"],
            [[f"{tool}", env["versions"][tool]] for tool in env["versions"]]
            + [[tool, f"not run: {why}"] for tool, why in env["skipped"].items()],
        )
    )
    cap = env["link"]["cap_mb_per_s"]
    for name in tables:
        table = tables[name]
        if name == "compare":
            parts.append(_compare(table))
        elif name in ("concurrency", "part_size", "file_size"):
            parts.append(_sweep(name, table))
        elif name == "sink":
            parts.append(_sink(tables))
        elif name == "startup":
            parts.append(_startup(table))
        elif name == "link":
            parts.append(_link(table, cap))
        elif name == "link_large":
            parts.append(_link_large(table, cap))
        elif name == "streams":
            parts.append(_streams(table))

    parts.append(_rss_check(tables))

    parts.append("\n## Command lines (c=8, 8 MiB parts)\n\n")
    for tool, command in env["commands"].items():
        parts.append(f"- {tool}: `{command}`\n")
    for tool, command in env.get("stream_commands", {}).items():
        parts.append(f"- {tool}, stream: `{command}`\n")
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
        parts.append(
            "None: every upload exited 0 and HeadObject showed the full size (streams: and the "
            "downloaded bytes matched the file's SHA-256).\n"
        )
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
    for r in tables.get("streams", {}).get("results", []):
        if r["tool"] == "persevere" and "peak_rss_max_mib" in r:
            ok = r["peak_rss_max_mib"] <= STREAM_RSS_BOUND_MIB
            rows.append(
                [
                    f"stream of {size_label(r['file_size'])} (bound {STREAM_RSS_BOUND_MIB} MiB)",
                    _fmt(r["peak_rss_max_mib"], 1),
                    "yes" if ok else "**NO**",
                ]
            )
    if not rows:
        return ""
    return f"\n## persevere's memory bounds (< {RSS_TARGET_MIB} MiB peak RSS)\n\n" + _table(
        ["setting", "highest peak RSS of the runs, MiB", "under the bound"], rows
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
        [r["wall_s"] - r["wall_s_min"] for r in results],
        [r["wall_s_max"] - r["wall_s"] for r in results],
    ]
    bars = ax.bar(x, walls, color=colors, yerr=errs, capsize=3)
    _bar_labels(ax, bars, ".1f", tops=[r["wall_s_max"] for r in results])
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
