"""The pure library's commands: ``strategies`` and ``simulate`` (no server, no orchestration).

The ``loopwise`` command (:mod:`flows.cli`) adds them beside the commands that need
Label Studio and Prefect; ``python -m loopwise.cli`` and ``python -m loopwise.demo`` run
them alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import numpy as np
import typer

if TYPE_CHECKING:
    import pandas as pd

    from loopwise.simulate import SimulationResult

app = typer.Typer(
    help="Loopwise: active learning that spends labels where they buy the most accuracy.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def strategies() -> None:
    """List the query strategies and mark the default."""
    from loopwise import strategies as s

    for name in s.names():
        mark = " (default)" if name == s.DEFAULT else ""
        typer.echo(f"{name:26s}{s.describe(name)}{mark}")


@app.command()
def simulate(
    dataset: Annotated[
        str,
        typer.Option(
            help="digits, letter, adult, trec, sst2, agnews, or a synthetic regime "
            "(syn-imbalance-1to20, syn-noise-10pct, ...: loopwise.datasets.REGIMES)"
        ),
    ] = "letter",
    strategy: Annotated[
        list[str] | None,
        typer.Option(
            "--strategy", "-s", help="strategy to compare with random; repeat for several"
        ),
    ] = None,
    seeds: Annotated[int, typer.Option(min=1, help="repetitions (seeds 0..N-1)")] = 3,
    batch_size: Annotated[int, typer.Option(min=1)] = 10,
    budget: Annotated[int, typer.Option(min=1, help="labels, seed set included")] = 500,
    jobs: Annotated[int, typer.Option(min=1, help="parallel processes")] = 2,
    out: Annotated[Path, typer.Option(help="folder for the table, JSON and PNG")] = Path(
        "demo-output"
    ),
) -> None:
    """Simulate a labeling campaign with an oracle and print the learning curves against random."""
    from loopwise import datasets
    from loopwise import strategies as s
    from loopwise.plots import plot_learning_curves
    from loopwise.simulate import run_simulation

    arms = strategy or [s.DEFAULT]
    for name in arms:
        if name not in s.REGISTRY:
            raise typer.BadParameter(f"unknown strategy {name!r}; known: {', '.join(s.names())}")
    try:
        data = datasets.load(dataset)
    except ValueError as err:  # an unknown name: the message lists the known ones
        raise typer.BadParameter(str(err), param_hint="--dataset") from None
    typer.echo(
        f"{data.name}: {len(data.y):,} rows, {data.n_classes} classes; arms: random, {', '.join(arms)}; "
        f"{seeds} seeds, batch {batch_size}, budget {budget}"
    )
    done = {"n": 0}
    total = seeds * (len(arms) + 1)

    def progress(arm: str, seed: int) -> None:
        done["n"] += 1
        typer.echo(f"  [{done['n']}/{total}] {arm} seed {seed} done")

    result = run_simulation(
        data.X,
        data.y,
        arms,
        model=data.model,
        seeds=range(seeds),
        batch_size=batch_size,
        budget=budget,
        n_jobs=jobs,
        progress=progress,
    )
    curves, summary, full = _print_results(result, seeds)
    out.mkdir(parents=True, exist_ok=True)
    png = plot_learning_curves(
        curves,
        out / f"learning_curve_{data.name}.png",
        title=f"{data.name}: {', '.join(arms)} vs random",
        highlight=arms[0],
    )
    result.curves.to_csv(out / f"curves_{data.name}.csv", index=False)
    (out / f"summary_{data.name}.json").write_text(
        json.dumps(
            {
                "dataset": data.name,
                "full_pool_accuracy": full,
                "params": result.params,
                "summary": json.loads(summary.to_json(orient="records")),
            },
            indent=2,
        )
    )
    typer.echo(
        f"\nWrote {png}, {out / f'curves_{data.name}.csv'} and {out / f'summary_{data.name}.json'}"
    )


def _print_results(
    result: SimulationResult, seeds: int
) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Print the mean curves and the summary; return them and the whole-pool accuracy."""
    curves = result.mean_curves()
    wide = curves.pivot(index="n_labels", columns="arm", values="mean")[result.arms]
    marks = np.unique(np.r_[wide.index[:: max(1, len(wide) // 12)], wide.index[-1]])
    full = float(np.mean(list(result.full_pool_accuracy.values())))
    typer.echo(
        f"\nLearning curve (mean test accuracy over {seeds} seeds; whole labeled pool: {full:.3f})"
    )
    typer.echo(wide.loc[marks].round(3).to_string())
    summary = result.summary()
    typer.echo(
        "\nSummary (AULC = mean accuracy over the curve; labels_to_X = labels to reach X% of the whole-pool accuracy)"
    )
    typer.echo(summary.round(4).to_string(index=False))
    return curves, summary, full


if __name__ == "__main__":
    app()
