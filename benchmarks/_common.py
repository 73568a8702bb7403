"""Shared helpers of the benchmark scripts (not a benchmark itself).

Every benchmark talks to the loopback reference server (:mod:`insights.testing.server`) only, prints the
machine it ran on and the command that reproduces it. Paths are relative to the repository root; the shared
corpus is looked up beside the repository (``<repo root>/../shared/corpus``) unless ``--corpus`` says
otherwise.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CORPUS = REPO_ROOT.parent / "shared" / "corpus"
SEEDS_DIR = REPO_ROOT / "seeds"
ANNOTATIONS_DIR = REPO_ROOT / "evals" / "seeds"

if str(REPO_ROOT) not in sys.path:  # run as `python benchmarks/bench_x.py` from anywhere
    sys.path.insert(0, str(REPO_ROOT))

import insights  # noqa: E402
from insights.documents import Document  # noqa: E402
from insights.extract import chunks_for  # noqa: E402
from insights.testing.server import ReferenceServer  # noqa: E402

API_KEY = "bench-not-a-key"  # the reference server ignores the key; never a real one


# --------------------------------------------------------------------------------------- reporting
def machine() -> dict[str, str]:
    """Where the figures come from."""
    try:
        load = "%.2f %.2f %.2f" % os.getloadavg()
    except OSError:  # pragma: no cover - not on every platform
        load = "n/a"
    versions = []
    for name in ("openai", "instructor", "pydantic", "httpx", "httpx2"):
        try:
            from importlib.metadata import version

            versions.append(f"{name} {version(name)}")
        except Exception:  # noqa: BLE001 - a missing distribution is not an error here
            pass
    return {
        "source": source_revision(),
        "platform": platform.platform(),
        "cpus": str(os.cpu_count()),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "insights": insights.__version__,
        "libraries": ", ".join(versions),
        "load average (1/5/15 min) at start": load,
    }


def source_revision() -> str:
    """The commit the library was measured at, and whether ``insights/`` had uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "insights"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"commit {head}" + (" + uncommitted changes in insights/" if dirty else "")


def reproduce_command(argv: Sequence[str] | None = None) -> str:
    """The command line that reproduces this run, from the repository root."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        shown = script.relative_to(REPO_ROOT).as_posix()
    except ValueError:
        shown = script.name
    return shlex.join(["python", shown, *argv[1:]])


def print_header(title: str) -> None:
    print(f"== {title}")
    for key, value in machine().items():
        print(f"   {key:<36} {value}")
    print()


def print_footer() -> None:
    print()
    print(f"reproduce (from the repository root): {reproduce_command()}")


def row(label: str, value: str, width: int = 44) -> None:
    print(f"   {label:<{width}} {value}")


def ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


def summary(values: Sequence[float]) -> dict[str, float]:
    """Median, mean, min and p90 of a list of durations."""
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, math.ceil(0.9 * len(ordered)) - 1)]
    return {
        "median": statistics.median(ordered),
        "mean": statistics.fmean(ordered),
        "min": ordered[0],
        "p90": p90,
    }


# ---------------------------------------------------------------------------------------- settings
def settings(url: str, **overrides: Any) -> insights.Settings:
    """Settings for the reference server, ignoring the caller's environment (hermetic runs)."""
    return insights.resolve_settings(env={}, base_url=url, api_key=API_KEY, **overrides)


def cli_env(url: str) -> dict[str, str]:
    """The environment for a CLI run against the reference server: no INSIGHTS_* or OPENAI_* from the
    caller, the package importable from the repository root."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("INSIGHTS_", "OPENAI_"))}
    env["OPENAI_BASE_URL"] = url
    env["OPENAI_API_KEY"] = API_KEY
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["XDG_CACHE_HOME"] = tempfile.gettempdir()  # never the user's cache, even by mistake
    return env


def run_cli(args: Sequence[str], url: str) -> tuple[float, float | None, subprocess.CompletedProcess[str]]:
    """Run ``python -m insights.cli ARGS``; return (wall seconds seen from outside, the CLI's own
    "wall time", the completed process)."""
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "insights.cli", *args],
        env=cli_env(url),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    outside = time.perf_counter() - started
    own = None
    for line in proc.stderr.splitlines():
        if "wall time" in line:
            try:
                own = float(line.rsplit("wall time", 1)[1].strip().rstrip("s"))
            except ValueError:
                pass
    return outside, own, proc


# --------------------------------------------------------------------------------------- documents
def seed_documents() -> list[Document]:
    """The five seed documents shipped in the repository."""
    return [insights.load_document(p) for p in sorted(SEEDS_DIR.glob("*.txt"))]


def corpus_or_none(path: Path | None) -> Path | None:
    """The corpus folder if it exists (``path`` or the default), else ``None``."""
    folder = Path(path) if path else DEFAULT_CORPUS
    return folder if folder.is_dir() else None


def corpus_missing_message(path: Path | None) -> str:
    folder = Path(path) if path else DEFAULT_CORPUS
    return (
        f"skipped: no corpus at {folder} (expected <repo root>/../shared/corpus; pass --corpus PATH to "
        "point at a folder of documents)"
    )


def single_chunk(docs: Iterable[Document], settings_: insights.Settings) -> list[Document]:
    """The documents that are sent in one request (not chunked)."""
    return [d for d in docs if len(chunks_for(d, settings_)) == 1]


def distinct(docs: Sequence[Document], n: int) -> list[Document]:
    """``n`` documents cycling ``docs``; repeats get a new id (``<id>~2``...) so no two requests are alike."""
    out: list[Document] = []
    for i in range(n):
        doc = docs[i % len(docs)]
        lap = i // len(docs)
        out.append(doc if lap == 0 else dataclasses.replace(doc, id=f"{doc.id}~{lap + 1}"))
    return out


def write_jsonl(docs: Iterable[Document], path: Path) -> Path:
    """Write documents as JSONL ``{id, text, metadata}`` for the CLI."""
    with path.open("w", encoding="utf-8") as fp:
        for d in docs:
            fp.write(json.dumps({"id": d.id, "text": d.text, "metadata": d.metadata}, ensure_ascii=False) + "\n")
    return path


def server(latency: float = 0.0) -> ReferenceServer:
    """A reference server on loopback answering from the seed annotations (start it with ``with``)."""
    return ReferenceServer(ANNOTATIONS_DIR, latency=latency)
