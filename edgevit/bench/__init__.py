"""`edgevit bench`: run a matrix of models x passes x profiles x runners, write bench.json and a
self-contained bench.html, and compare with a baseline (docs/bench.md).

    config.py      the YAML configuration, validated (errors name the field); default.yaml ships
    matrix.py      cells, their grouping by artifact, runner availability (unavailable: skipped)
    execute.py     compile once per artifact, run every cell, profile plan steps
    record.py      one cell's record (latency, memory, accuracy, compile, per-kernel time)
    results.py     the versioned bench.json document (host, edgevit commit) and reading it back
    baseline.py    cell-by-cell comparison with a baseline bench.json, tolerances
    svg.py         inline SVG bar charts;  report_html.py  the HTML report
    run_bench.py   the whole command as a function;  cli.py  the Typer command
"""
