"""The workspace's artifact list page: named artifacts with their versions, size, newest version,
consumers and producers counted over the runs the user may view; filtered by name, paged, linked
from the workspace's tabs."""

from runs import services as run_services
from runs.artifacts import views as artifact_views

from .roles import browser, role_matrix
from .test_artifacts import DATA_V1, DATA_V2, listing, track

URL = "/w/acme/-/artifacts/"


def test_the_list_shows_each_name_with_counts_over_visible_runs(owner, viewer, project, run):
    from projects import services as project_services

    nlp = project_services.create_project(owner, project.workspace, "nlp", key="NLP")
    hidden, _ = run_services.create_run(owner, nlp, name="prep v2")
    track(owner, run, "data/train", DATA_V1, name="tabular")
    track(owner, hidden, "data", DATA_V2, role="output", name="tabular")
    track(owner, hidden, "secret", {"s.csv": b"s"}, name="only-in-nlp", seq=1)
    page = browser(viewer).get(URL).content.decode()
    assert "tabular" in page and listing(DATA_V1)[0][:12] in page
    assert "only-in-nlp" not in page and listing(DATA_V2)[0][:12] not in page
    assert f'href="{URL}"' in browser(viewer).get("/w/acme/-/artifacts/tabular").content.decode()  # crumbs
    owners = browser(owner).get(URL).content.decode()
    assert "only-in-nlp" in owners and listing(DATA_V2)[0][:12] in owners  # the newest version owner sees
    assert f'href="{URL}"' in browser(owner).get("/w/acme/").content.decode()  # the workspace's tabs


def test_the_list_filters_by_name_and_pages(owner, run, monkeypatch):
    monkeypatch.setattr(artifact_views, "ARTIFACTS_PER_PAGE", 2)
    for i, name in enumerate(["alpha", "beta", "gamma"]):
        track(owner, run, f"data/{name}", {f"{name}.csv": name.encode()}, name=name, seq=i)
    client = browser(owner)
    first = client.get(URL).content.decode()
    assert "alpha" in first and "beta" in first and "gamma" not in first and "page 1 of 2" in first
    assert "gamma" in client.get(URL + "?page=2").content.decode()
    only = client.get(URL + "?q=MM").content.decode()
    assert "gamma" in only and "alpha" not in only
    assert "No artifact name contains" in client.get(URL + "?q=zzz").content.decode()


def test_the_list_page_answers_each_role(world, owner, run):
    track(owner, run, "data/train", DATA_V1, name="tabular")
    role_matrix(
        world,
        lambda client: client.get(URL),
        {"owner": 200, "contributor": 200, "viewer": 200, "stranger": 404, "anonymous": 302},
        ui=True,
    )


def test_the_list_page_reads_a_fixed_number_of_statements(owner, project, django_assert_max_num_queries):
    def make(start, count):
        made, _ = run_services.create_run(owner, project, name=f"r{start}")
        for i in range(start, start + count):
            track(owner, made, f"data/d{i}", {f"{i}.csv": bytes([i]) * 3}, name=f"set-{i:02}", seq=i)

    make(0, 2)
    client = browser(owner)
    with django_assert_max_num_queries(30) as few:
        assert client.get(URL).status_code == 200
    make(2, 30)
    with django_assert_max_num_queries(len(few.captured_queries)):
        assert "set-31" in client.get(URL).content.decode()
