"""Reference annotations live as files in ``evals/`` (installed as the package data ``insights.eval_files``).

``seeds/`` and ``corpus/`` hold annotation files (``evals/README.md``); ``insights.evaluate.annotation_dirs``
finds them in an installed package as in a source checkout. ``results/`` holds scores of live models
(``scripts/score_model.py``) and is not installed.
"""
