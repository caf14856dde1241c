"""Sample-efficiency benchmark (`archer bench`): methods x seeds on one env from one start,
learning curves against episodes, turns, tokens, gradient steps and seconds, episodes-to-
threshold with bootstrap intervals, plots and a report. See docs/benchmark.md.

    config.py   BenchConfig (the bench YAML), validated
    run.py      the start, the plan (one `archer train` per method and seed), running it
    curves.py   curves and the statistics (torch-free)
    report.py   results.csv, summary.json, plots, report.md
"""
