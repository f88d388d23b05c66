"""``fastgen compare``: VAE, GAN, flows and autoregressive models trained under one budget and
measured the same way, so the usual qualitative comparison table gets measured numbers.

Files, one job each:
    budget.py     the wall-clock / step budget (``--budget 10m``, ``--steps N``)
    training.py   train one model under the budget (or load its checkpoint), with a learning curve
    measure.py    the measurements of one trained model (likelihood, sample quality, speed, x -> z)
    audio.py      the WaveNet section (embedded notes)
    report.py     the table, report.md, results.json and the figures
    cli.py        the command
"""
