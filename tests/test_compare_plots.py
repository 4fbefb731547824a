"""Compare's parameter plots, server side: which parameters the parallel-coordinates plot opens on
and the values it and the scatter get (strings and booleans as categories)."""

import re

import pytest
from django.test import Client

from runs import services

pytestmark = pytest.mark.django_db

# lr drives the accuracy, the optimizer too (sgd runs are worse), dropout the loss; seed never changes
SWEEP = [
    # lr, optimizer, dropout, accuracy, loss
    (0.1, "adam", 0.1, 0.95, 0.15),
    (0.03, "adam", 0.3, 0.9, 0.35),
    (0.01, "sgd", 0.2, 0.8, 0.25),
    (0.003, "sgd", 0.1, 0.7, 0.1),
    (0.001, "sgd", 0.3, 0.6, 0.4),
]


@pytest.fixture
def sweep(project, owner):
    ids = []
    for lr, optimizer, dropout, acc, loss in SWEEP:
        run, _ = services.create_run(owner, project, name=f"{optimizer}-{lr}")
        services.apply_batch(
            owner,
            run,
            stream="s",
            seq=0,
            raw_ops=[
                {
                    "op": "assign",
                    "path": "parameters",
                    "value": {"lr": lr, "optimizer": optimizer, "dropout": dropout, "seed": 7, "amp": lr > 0.005},
                },
                {"op": "assign", "path": "eval/acc", "value": acc},
                {"op": "append", "path": "train/loss", "values": [1.0, loss]},
            ],
        )
        ids.append(run.human_id)
    return ",".join(ids)


@pytest.fixture
def browser(viewer):
    client = Client()
    client.force_login(viewer)
    return client


def choices(html):
    """(path, checked, note) of each parameter checkbox, in the listed order."""
    return [
        (path, bool(checked), note)
        for path, checked, note in re.findall(
            r'name="params" value="([^"]+)" (checked)?>.*?<small class="muted">([^<]*)</small>', html, re.S
        )
    ]


def test_parallel_coordinates_open_on_the_parameters_that_vary_with_the_metric(browser, sweep):
    html = browser.get("/w/acme/vision/compare", {"runs": sweep, "fragment": "plots"}, HTTP_HX_REQUEST="true")
    listed = choices(html.content.decode())
    paths = [p for p, _, _ in listed]
    # lr and amp follow the accuracy exactly, the optimizer nearly; dropout little; seed is constant
    assert set(paths[:2]) == {"parameters/amp", "parameters/lr"}
    assert paths.index("parameters/optimizer") < paths.index("parameters/dropout")
    assert listed[-1] == ("parameters/seed", False, "constant")
    assert all(checked for p, checked, _ in listed if p != "parameters/seed")
    notes = dict((p, n) for p, _, n in listed)
    assert notes["parameters/lr"] == "|ρ| 1.00"
    assert notes["parameters/optimizer"].startswith("η ")
    assert 'name="metric" list="numeric-paths" placeholder="e.g. eval/acc" value="eval/acc"' in html.content.decode()


def test_another_metric_reorders_the_parameters(browser, sweep):
    html = browser.get(
        "/w/acme/vision/compare",
        {"runs": sweep, "fragment": "plots", "metric": "train/loss"},
        HTTP_HX_REQUEST="true",
    ).content.decode()
    listed = choices(html)
    assert listed[0][0] == "parameters/dropout"
    assert 'value="train/loss"' in html and "most associated with train/loss" in html


def test_values_give_strings_and_booleans_as_categories(browser, sweep):
    data = browser.get(
        "/w/acme/vision/compare",
        {"runs": sweep, "fragment": "values", "p": ["parameters/optimizer", "parameters/amp", "eval/acc", "missing"]},
    ).json()
    assert data["paths"] == ["parameters/optimizer", "parameters/amp", "eval/acc", "missing"]
    assert [r["values"] for r in data["runs"]] == [
        ["adam", "true", 0.95, None],
        ["adam", "true", 0.9, None],
        ["sgd", "true", 0.8, None],
        ["sgd", "false", 0.7, None],
        ["sgd", "false", 0.6, None],
    ]
