def test_async_run_logs_and_reads_back(connect):
    run = connect(name="smoke", tags=["baseline"])
    run["parameters"] = {"lr": 0.01, "optimizer": {"name": "adam", "betas": [0.9, 0.999]}}
    for i in range(100):
        run["train/loss"].append(1.0 / (i + 1))
    run["eval/acc"] = 0.94
    run["sys/tags"].add(["best"])
    assert run.wait(30)
    assert run["sys/id"].fetch().startswith("P")
    assert run["eval/acc"].fetch() == 0.94
    assert run["parameters"].fetch() == {"lr": 0.01, "optimizer": {"name": "adam", "betas": "[0.9, 0.999]"}}
    df = run["train/loss"].fetch_values()
    assert list(df["step"]) == list(range(100))
    assert run["sys/tags"].fetch() == {"baseline", "best"}
    run.stop()
    assert run.status()["errors"] == 0
