"""Helpers shared by the benchmark scripts: machine description and appending to RESULTS.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).with_name("RESULTS.md")
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
    return "python " + " ".join([str(Path(sys.argv[0]).relative_to(ROOT)) if Path(sys.argv[0]).is_absolute() else sys.argv[0], *sys.argv[1:]])


def record(title: str, body: str) -> None:
    """Append a dated section with the command and the machine to benchmarks/RESULTS.md, and print it."""
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    except OSError:
        rev = "?"
    text = (f"\n## {title}\n\n{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, commit {rev or '?'}  \n"
            f"Command: `{command()}`  \nMachine: {machine()}\n\n{body.rstrip()}\n")
    print(text)
    if os.environ.get("RNN_SEARCH_BENCH_NO_RECORD"):
        return
    if not RESULTS.exists():
        RESULTS.write_text("# Benchmark results\n\nEach section is appended by a script under `benchmarks/`; "
                           "ratios are measured in one process against a reference run (these machines are shared and noisy).\n")
    with RESULTS.open("a") as f:
        f.write(text)
