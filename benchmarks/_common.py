"""Helpers shared by the benchmark scripts: machine description and appending to RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
LOG = Path(__file__).with_name("log")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CSV = ROOT.parent / "shared" / "data" / "bike-sharing" / "hour.csv"


def machine() -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, {gpu}; Python {platform.python_version()}, torch {torch.__version__}, "
            f"{platform.system()} {platform.release()}")


def command() -> str:
    script = str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute() else sys.argv[0]
    return "python " + shlex.join([script, *sys.argv[1:]])  # quoted as typed: an empty --models "" stays visible


def revision() -> str:
    """The checkout's short commit, or "?" outside git."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = ""
    return rev or "?"


def record(title: str, body: str) -> None:
    """Write a dated section with the command and the machine into benchmarks/RESULTS.md, and print it. A section
    of the same title is replaced (RESULTS.md shows what holds now); the replaced one is appended to
    benchmarks/log/<date>.md."""
    text = (f"## {title}\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {revision()}  \n"
            f"Command: `{command()}`  \nMachine: {machine()}\n\n{body.rstrip()}\n")
    print(text)
    if os.environ.get("RNN_SEARCH_BENCH_NO_RECORD"):
        return
    current = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results: what holds now\n"
    sections = re.split(r"\n(?=## )", current)
    old = [s for s in sections[1:] if s.splitlines()[0] == f"## {title}"]
    if old:
        log = LOG / time.strftime("%Y-%m-%d.md", time.gmtime())
        log.parent.mkdir(exist_ok=True)
        with log.open("a") as f:
            f.write("\n" + old[0].rstrip() + "\n")
        sections = [text.rstrip() + "\n" if s is old[0] else s for s in sections]
    else:
        sections.append(text)
    tmp = RESULTS.with_suffix(".md.tmp")
    tmp.write_text("\n".join(s.rstrip("\n") + "\n" for s in sections))
    os.replace(tmp, RESULTS)  # never a half-written RESULTS.md
