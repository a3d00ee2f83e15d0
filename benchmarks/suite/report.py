"""The suite's results as a console table and as Markdown: per part, its status, its rows and its summary."""
from __future__ import annotations

import json
from typing import Any


def columns(rows: list[dict[str, Any]]) -> list[str]:
    names: list[str] = []
    for row in rows:
        names += [key for key in row if key not in names]
    return names


def cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1 else f"{value:,.1f}"
    return "" if value is None else str(value)


def part_lines(name: str, part: dict[str, Any], markdown_table: bool) -> list[str]:
    head = f"{name}: {part['status']} ({part.get('seconds', '?')} s)"
    reason = part.get("reason") or part.get("error")
    lines = [f"## {head}" if markdown_table else f"== {head}"]
    if reason:
        lines.append(f"{'reason' if part['status'] == 'skipped' else 'error'}: {reason}")
    rows = part.get("rows", [])
    if rows:
        keys = columns(rows)
        values = [[cell(row.get(key)) for key in keys] for row in rows]
        if markdown_table:
            lines += ["", "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
            lines += ["| " + " | ".join(v) + " |" for v in values]
            lines.append("")
        else:
            widths = [max(len(key), *(len(v[i]) for v in values)) for i, key in enumerate(keys)]
            lines.append("  ".join(key.ljust(w) for key, w in zip(keys, widths)))
            lines += ["  ".join(v[i].ljust(w) for i, w in enumerate(widths)) for v in values]
    for key, value in part.get("summary", {}).items():
        lines.append(f"- {key}: {json.dumps(value, default=str)}" if markdown_table else f"  {key}: {value}")
    for note in part.get("notes", []):
        lines.append(f"- note: {note}" if markdown_table else f"  note: {note}")
    return lines


def table(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = [f"GPU suite: {env.get('gpu', 'CPU')}, torch {env['torch']}, {env['date']}"]
    for name, part in results["parts"].items():
        lines += part_lines(name, part, markdown_table=False)
    return "\n".join(lines)


def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = ["# GPU suite results", "", f"`{env['command']}`", "",
             ", ".join(f"{key} {value}" for key, value in env.items() if key != "command"), ""]
    for name, part in results["parts"].items():
        lines += part_lines(name, part, markdown_table=True) + [""]
    return "\n".join(lines)
