"""Re-record every recorded response the project ships:

    python tests/record.py

1. ``cassettes/seeds-replay.jsonl`` — the responses replayed by ``insights extract seeds/ --replay …``
   (the README's first command): an export of the cache after extracting ``seeds/``.
2. ``cassettes/**/*.yaml`` — the vcrpy cassettes of ``tests/test_cassettes.py``, ``tests/test_modes.py``
   (one per mode in ``cassettes/modes``; the faults in ``cassettes/faults``) and the theme-label cassette of
   ``tests/test_themes.py``.
   (``cassettes/realmodel/`` holds a real model's answers; ``python scripts/realmodel.py --record`` re-records it.)
3. ``cassettes/RECORDED.json`` — where they came from, and the model name the tests must ask for.

Without ``OPENAI_API_KEY`` everything is recorded from the project's reference server on loopback, which
answers from the reference annotations in ``evals/seeds`` (written by people reading the seeds). With
``OPENAI_API_KEY`` set (and optionally ``OPENAI_BASE_URL``, ``INSIGHTS_MODEL``), the replay file and the
seed cassettes are recorded from that live endpoint instead; the fault cassettes (hallucination, 429, 500,
401, cut-off answers, raw newlines, a rejected mode…) and the mode cassettes are always recorded from the
reference server, because only it produces those faults, and the annotated answers, on demand.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from insights import Cache, ModelClient, extract_many, load_corpus, resolve_settings  # noqa: E402
from insights.testing.server import ReferenceServer  # noqa: E402

CASSETTES = REPO / "cassettes"
REPLAY = CASSETTES / "seeds-replay.jsonl"
#: The theme-label cassette (always from the reference server; needs the themes extra).
THEME_CASSETTES = ["tests/test_themes.py::test_model_label_replays_from_its_cassette"]


def record_replay_file(base_url: str, api_key: str, model: str, source: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        settings = resolve_settings(
            env={}, base_url=base_url, api_key=api_key, model=model, cache_path=Path(tmp) / "c.db"
        )
        with Cache(settings.cache_path) as cache:  # type: ignore[arg-type]
            client = ModelClient(settings, cache=cache)
            outcomes = list(extract_many(load_corpus(REPO / "seeds"), client=client, concurrency=1))
            failed = [o.document.id for o in outcomes if not o.ok]
            if failed:
                raise SystemExit(f"extraction failed for {failed}; nothing written")
            # The replayed run asks for the same model at an endpoint with the same cache identity.
            meta = {"_replay": {"source": source, "model": model, "base_url": base_url}}
            with open(REPLAY, "w", encoding="utf-8") as fp:
                fp.write(json.dumps(meta) + "\n")
                count = cache.export(fp)
            client.close()
    return count


def main() -> int:
    live_key = os.environ.get("OPENAI_API_KEY")
    model = os.environ.get("INSIGHTS_MODEL") or "gpt-4o-mini"
    # cassettes/realmodel/ comes from a real model, not from here: `python scripts/realmodel.py --record`.
    for old in [*CASSETTES.glob("seeds/*.yaml"), *CASSETTES.glob("faults/*.yaml")]:
        old.unlink()
    if live_key:
        base_url = os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        source = f"the live endpoint {base_url.split('//')[-1].split('/')[0]} (model {model})"
        n = record_replay_file(base_url, live_key, model, source)
        recorded = {"source": "live", "model": model}
    else:
        source = "the project's reference server, answering from the reference annotations in evals/seeds"
        with ReferenceServer(REPO / "evals" / "seeds") as server:
            n = record_replay_file(server.url, "reference-server", model, source)
        recorded = {"source": "reference-server", "model": model}
    print(f"wrote {REPLAY.relative_to(REPO)} ({n} responses) from {source}")
    (CASSETTES / "RECORDED.json").write_text(json.dumps(recorded, indent=2) + "\n")
    env = dict(os.environ, INSIGHTS_RECORD="1")
    return subprocess.call(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "tests/test_cassettes.py",
            "tests/test_modes.py",
            *THEME_CASSETTES,
        ],  # fmt: skip
        cwd=REPO,
        env=env,
    )


if __name__ == "__main__":
    sys.exit(main())
