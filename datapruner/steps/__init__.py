"""The wing above the rooms: the step table, the loop that runs it, and one declaration per stage.

    contract.py  the vocabulary every declaration uses: Step, Context, NotReady, tokens, digests
    loop.py      run_step: skip finished parts, sweep stale ones, claim, map through the runner, mark
    table.py     the table, in pipeline order, and what is derived from it (names, map steps, commands)
    embed.py  cluster.py  metrics.py  select.py  write.py  report.py   the stages' steps

The rooms below (embed/, cluster/, metrics/, select/, write/, report/) are libraries of functions of
paths, arrays and options; none of them imports this package.
"""
