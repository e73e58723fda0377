"""The ``loopwise`` command line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

app = typer.Typer(
    help="Loopwise: active learning that spends labels where they buy the most accuracy.",
    no_args_is_help=True,
    add_completion=False,
)


@app.callback()
def main() -> None:
    """Loopwise command line."""


@app.command()
def strategies() -> None:
    """List the query strategies and mark the default."""
    from loopwise import strategies as s

    for name in s.names():
        doc = (s.REGISTRY[name].__doc__ or "").strip().splitlines()[0]
        mark = " (default)" if name == s.DEFAULT else ""
        typer.echo(f"{name:26s}{doc}{mark}")


@app.command()
def simulate(
    dataset: Annotated[str, typer.Option(help="digits, letter, adult or trec")] = "letter",
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
    data = datasets.load(dataset)
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


annotators_app = typer.Typer(
    help="Simulated annotators for demos, tests and benchmarks.", no_args_is_help=True
)
app.add_typer(annotators_app, name="annotators")


@annotators_app.command("simulate")
def annotators_simulate(
    project_id: Annotated[int, typer.Option("--project-id", help="Label Studio project id")],
    profiles: Annotated[
        Path,
        typer.Option(
            help="YAML/JSON file: annotators with accuracy, confusion, latency, skip_rate"
        ),
    ],
    truth: Annotated[Path, typer.Option(help="CSV with columns item_id,label (the ground truth)")],
    url: Annotated[
        str, typer.Option(envvar="LABEL_STUDIO_URL", help="Label Studio URL")
    ] = "http://127.0.0.1:8080",
    token_env: Annotated[
        str, typer.Option(help="environment variable that holds the API token")
    ] = "LABEL_STUDIO_API_KEY",
    data_kind: Annotated[str, typer.Option(help="text, tabular or image")] = "text",
    seed: Annotated[int, typer.Option(help="seeds the annotators' answers")] = 0,
) -> None:
    """Annotate a project's open tasks through the API as several simulated users."""
    import importlib
    import os

    import pandas as pd

    from loopwise.labelstudio import labels_of_config

    token = os.environ.get(token_env)
    if not token:
        raise typer.BadParameter(
            f"environment variable {token_env} is not set (it holds the API token)"
        )
    sim = importlib.import_module(
        "devstack.annotators"
    )  # the I/O side lives outside the pure library
    try:
        specs = sim.load_profiles(profiles)
    except ValueError as err:
        raise typer.BadParameter(str(err)) from err
    table = pd.read_csv(truth, dtype=str)
    missing = {"item_id", "label"} - set(table.columns)
    if missing:
        raise typer.BadParameter(
            f"{truth}: missing column(s) {sorted(missing)}; found {list(table.columns)}"
        )
    client = importlib.import_module("tasks.labelstudio").connect(url, token)
    labels = labels_of_config(client.projects.get(id=project_id).label_config)
    out = sim.simulate_annotators(
        url,
        token,
        project_id,
        dict(zip(table["item_id"], table["label"], strict=True)),
        specs,
        labels=labels,
        data_kind=data_kind,
        random_state=seed,
    )
    typer.echo(
        f"posted {out['posted']} annotations ({out['skipped']} skips): {out['per_annotator']}"
    )


if __name__ == "__main__":
    app()
