"""faceaudit as Prefect users run it, against one real local Prefect server: a night that keeps going
past a failed dump, artifacts and logs read back through the client, a served deployment with a time
zone and typed parameters, and a work-pool deployment run end to end by a real worker."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests import warm
from tests.conftest import faceaudit, in_background, lock_held_elsewhere, stop_group, wait_for


def make_dumps(trained: dict, root: Path, nights: list[str], per_dump: int = 2) -> Path:
    images = sorted((trained["data"] / "beta").rglob("*.png"))
    for i, night in enumerate(nights):
        (root / night).mkdir(parents=True)
        for image in images[i * per_dump : (i + 1) * per_dump]:
            shutil.copyfile(image, root / night / image.name)
    return root


def client():
    from prefect import get_client

    return get_client(sync_client=True)


def api(path: str, body: dict) -> list[dict]:
    """POST a filter to the Prefect server's REST API (the same calls its UI makes)."""
    request = urllib.request.Request(
        f"{os.environ['PREFECT_API_URL']}/{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def artifact(key: str) -> dict:
    found = api("artifacts/filter", {"artifacts": {"key": {"any_": [key]}}})
    assert found, f"no artifact {key!r}"
    return found[0]


def flow_run_named(name: str) -> dict:
    runs = api("flow_runs/filter", {"flow_runs": {"name": {"any_": [name]}}})
    assert len(runs) == 1, f"expected one flow run named {name!r}, found {len(runs)}"
    return runs[0]


def log_messages(flow_run_id: str) -> list[str]:
    return [log["message"] for log in api("logs/filter", {"logs": {"flow_run_id": {"any_": [flow_run_id]}}})]


def test_a_failed_dump_does_not_stop_the_night(trained: dict, tmp_path: Path, prefect_api: str) -> None:
    from faceaudit.flows.nightly_flow import nightly_flow

    dumps = make_dumps(trained, tmp_path / "dumps", ["2026-11-20", "2026-11-21", "2026-11-22"])
    (dumps / "2026-11-20" / "broken.jpg").write_bytes(b"not a picture at all")
    reports = tmp_path / "reports"
    reports.mkdir()
    (reports / "2026-11-21").write_text("a file where the dump's report folder should go")

    state = nightly_flow(
        str(dumps),
        str(reports),
        str(tmp_path / "store"),
        str(trained["model"]),
        explain="none",
        samples=20,
        return_state=True,
    )
    assert state.is_failed()
    assert "1 of 3 dumps failed: 2026-11-21: UnsafePath: " in state.message
    assert "2026-11-21 is not a folder" in state.message
    for night, files in (("2026-11-20", 3), ("2026-11-22", 2)):
        run = json.loads((reports / night / "run.json").read_text())
        assert run["files"] == files and (reports / night / "verdicts.jsonl").is_file()
        recorded = flow_run_named(f"score {night}")
        assert run["prefect"]["flow_run_id"] == recorded["id"]
        assert run["prefect"]["flow_run_url"].endswith(recorded["id"])

    run = json.loads((reports / "2026-11-20" / "run.json").read_text())
    from faceaudit.flows.run_log import artifact_key

    table = json.loads(artifact(artifact_key("verdicts", dumps / "2026-11-20"))["data"])
    assert {row["verdict"]: row["files"] for row in table} == run["counts"]
    assert run["counts"]["unreadable"] == 1
    summary = artifact(artifact_key("summary", dumps / "2026-11-20"))["data"]
    assert run["model"]["id"] in summary and "broken.jpg | not an image: text" in summary
    assert f"ai {run['thresholds']['ai']:.4g}," in summary  # 4 significant digits, not 16
    report_link = artifact(artifact_key("report", dumps / "2026-11-20"))["data"]
    assert (reports / "2026-11-20" / "report.html").resolve().as_uri() in report_link
    failed = artifact(artifact_key("failed", dumps / "2026-11-21"))["data"]
    assert "failed" in failed and "UnsafePath" in failed and "is not a folder" in failed
    night = {row["dump"]: row for row in json.loads(artifact(artifact_key("night", dumps))["data"])}
    assert night["2026-11-21"]["state"] == "failed" and night["2026-11-22"]["state"] == "scored"
    assert night["2026-11-22"]["report"].endswith("2026-11-22/report.html")
    index = (reports / "index.html").read_text()
    assert 'href="2026-11-20/report.html"' in index and 'href="2026-11-22/report.html"' in index

    scored = flow_run_named("score 2026-11-20")
    wait_for(
        lambda: any("unreadable: broken.jpg: not an image: text" in m for m in log_messages(scored["id"])),
        60,
        "the unreadable file's reason in the dump's run logs",
    )
    failed_run = flow_run_named("score 2026-11-21")
    assert failed_run["state_type"] == "FAILED"
    # Prefect's own command line, from the lock's environment, lists both: with fastapi 0.151 and
    # later this server refused the CLI's requests (README, "Install").
    listed = subprocess.run(
        [sys.executable, "-m", "prefect", "flow-run", "ls", "--flow-name", "score", "--limit", "200",
         "-o", "json"],
        capture_output=True, text=True, env={**os.environ, "PREFECT_API_URL": prefect_api},
    )  # fmt: skip
    assert listed.returncode == 0, listed.stdout + listed.stderr
    states = {run["id"]: run["state"]["type"] for run in json.loads(listed.stdout)}
    assert (states[scored["id"]], states[failed_run["id"]]) == ("COMPLETED", "FAILED")
    tasks = api("task_runs/filter", {"flow_runs": {"id": {"any_": [scored["id"]]}}})
    steps = {t["name"].rsplit("-", 1)[0] for t in tasks if t["state_type"] == "COMPLETED"}
    expected = {"scan-folder", "embed-new-images", "predict", "find-faces", "write-outputs"}
    assert steps == expected  # --explain none: no draw-maps

    # The next night: the two good dumps are current, and their runs say so in their state.
    again = nightly_flow(
        str(dumps), str(reports), str(tmp_path / "store"), str(trained["model"]), explain="none",
        samples=20, return_state=True,
    )  # fmt: skip
    assert again.is_failed() and "1 of 3 dumps failed" in again.message
    kept = api("flow_runs/filter", {"flow_runs": {"name": {"any_": ["score 2026-11-22"]}}})
    assert any(
        r["state_name"] == "Completed" and "report up to date" in (r["state"]["message"] or "") for r in kept
    )


def test_a_dump_whose_report_folder_is_busy_is_skipped(trained: dict, tmp_path: Path) -> None:
    from faceaudit.flows.nightly_flow import nightly_flow

    dumps = make_dumps(trained, tmp_path / "dumps", ["a", "b"])
    reports = tmp_path / "reports"
    with lock_held_elsewhere(reports / "a"):
        model = str(trained["model"])
        done = nightly_flow.fn(str(dumps), str(reports), str(tmp_path / "store"), model, "none", 20)
    assert list(done["scored"]) == ["b"] and not done["failed"]
    assert "being written by another faceaudit run" in done["busy"]["a"]


def test_score_flow_parameters_are_typed_and_checked(trained: dict, tmp_path: Path) -> None:
    from prefect.exceptions import ParameterTypeError

    from faceaudit.flows.orchestration import run_flow
    from faceaudit.flows.score_flow import score_flow

    schema = score_flow.parameters.model_dump()["properties"]
    assert schema["explain"]["enum"] == ["flagged", "all", "none"]
    assert schema["explain_method"]["enum"] == ["occlusion", "gradient", "both"]
    assert (schema["batch_size"]["minimum"], schema["batch_size"]["maximum"]) == (1, 1024)
    # In-process runs are checked against the same schema, before anything is written.
    for bad in ({"explain": "everything"}, {"batch_size": 0}):
        out = tmp_path / f"out-{len(bad)}-{next(iter(bad))}"
        with pytest.raises(ParameterTypeError):
            run_flow(
                score_flow,
                False,
                input_dir=str(trained["data"]),
                out_dir=str(out),
                store_dir=str(tmp_path / "store"),
                **bad,
            )
        assert not out.exists()


def _env(api: str) -> dict:
    return {**os.environ, "PREFECT_API_URL": api}


def _deployment(name: str):
    from prefect.exceptions import ObjectNotFound

    def read():
        try:
            with client() as c:
                return c.read_deployment_by_name(name)
        except ObjectNotFound:
            return None

    return read


def test_served_deployment_has_a_time_zone_typed_parameters_and_one_night_at_a_time(
    trained: dict, tmp_path: Path, prefect_api: str
) -> None:
    from prefect.deployments import run_deployment
    from prefect.exceptions import PrefectHTTPStatusError

    dumps = make_dumps(trained, tmp_path / "dumps", ["2026-11-20"])
    reports = tmp_path / "reports"
    bad_cron = faceaudit("serve", str(dumps), "--out", str(reports), "--cron", "0 2 * *")
    assert bad_cron.returncode == 2 and "Invalid cron string" in bad_cron.stderr
    bad_zone = faceaudit(
        "serve", str(dumps), "--out", str(reports), "--cron", "0 2 * * *", "--timezone", "Mars/Base"
    )
    assert bad_zone.returncode == 2 and "unknown time zone 'Mars/Base'" in bad_zone.stderr

    command = [*warm.CLI, "serve", str(dumps), "--out", str(reports)]
    command += ["--cron", "0 2 * * *", "--timezone", "Europe/Paris", "--name", "served"]
    command += ["--model", str(trained["model"]), "--store", str(tmp_path / "store"), "--explain", "none"]
    served = in_background(command, _env(prefect_api))
    try:
        deployment = wait_for(_deployment("nightly/served"), 120, "the served deployment")
        schedule = deployment.schedules[0].schedule
        assert (schedule.cron, schedule.timezone) == ("0 2 * * *", "Europe/Paris")
        assert deployment.global_concurrency_limit.limit == 1
        assert set(deployment.tags) == {"faceaudit", "nightly"} and deployment.version
        properties = deployment.parameter_openapi_schema["properties"]
        assert properties["explain"]["enum"] == ["flagged", "all", "none"]
        assert properties["samples"]["anyOf"][0]["maximum"] == 10000
        with client() as c, pytest.raises(PrefectHTTPStatusError) as refused:
            c.create_flow_run_from_deployment(deployment.id, parameters={"explain": "everything"})
        assert refused.value.response.status_code == 409

        finished = run_deployment("nightly/served", timeout=300, poll_interval=1)
        assert finished.state.is_completed(), finished.state.message
        assert json.loads((reports / "2026-11-20" / "run.json").read_text())["files"] == 2
    finally:
        stop_group(served)


def test_a_work_pool_worker_runs_the_nightly_deployment(
    trained: dict, tmp_path: Path, prefect_api: str
) -> None:
    from prefect.deployments import run_deployment

    dumps = make_dumps(trained, tmp_path / "dumps", ["2026-11-20", "2026-11-21"])
    reports = tmp_path / "reports"
    deployed = faceaudit(
        "deploy",
        str(dumps),
        "--out",
        str(reports),
        "--pool",
        "faceaudit-test-pool",
        "--interval",
        "86400",
        "--name",
        "pooled",
        "--model",
        str(trained["model"]),
        "--store",
        str(tmp_path / "store"),
        "--explain",
        "none",
    )
    assert deployed.returncode == 0, deployed.stderr
    assert "on pool 'faceaudit-test-pool'" in deployed.stdout
    deployment = _deployment("nightly/pooled")()
    assert deployment.work_pool_name == "faceaudit-test-pool"
    assert deployment.global_concurrency_limit.limit == 1

    worker = in_background(
        [sys.executable, "-m", "prefect", "worker", "start", "--pool", "faceaudit-test-pool"],
        _env(prefect_api),
        cwd=tmp_path,
    )
    try:
        finished = run_deployment("nightly/pooled", timeout=400, poll_interval=1)
        assert finished.state.is_completed(), finished.state.message
    finally:
        stop_group(worker)
    for night in ("2026-11-20", "2026-11-21"):
        assert json.loads((reports / night / "run.json").read_text())["files"] == 2


def test_a_night_scores_again_when_an_output_parameter_changes(trained: dict, tmp_path: Path) -> None:
    """A report is current only for the same files, model, explain and samples; --force scores anyway."""
    from faceaudit.flows.nightly_flow import nightly_flow

    dumps = make_dumps(trained, tmp_path / "dumps", ["d"], per_dump=2)
    common = dict(
        dumps_root=str(dumps), reports_root=str(tmp_path / "reports"), store_dir=str(tmp_path / "store")
    )
    common["model_dir"] = str(trained["model"])

    def night(**params) -> tuple[dict, dict]:
        done = nightly_flow.fn(**common, **params)
        return done, json.loads((tmp_path / "reports" / "d" / "run.json").read_text())

    done, run = night(explain="none", samples=20)
    assert list(done["scored"]) == ["d"] and run["explain"] == "none"
    done, run = night(explain="all", samples=20)
    assert list(done["scored"]) == ["d"] and run["explain"] == "all"
    assert len(list((tmp_path / "reports" / "d" / "maps").glob("*.png"))) == 2
    done, run = night(explain="all", samples=30)
    assert list(done["scored"]) == ["d"] and run["samples"] == 30
    done, _ = night(explain="all", samples=30)
    assert done["up_to_date"] == ["d"] and not done["scored"]
    done, _ = night(explain="all", samples=30, force=True)
    assert list(done["scored"]) == ["d"]
    assert "-0.0" not in (tmp_path / "reports" / "d" / "run.json").read_text()
    assert isinstance(run["embedding"]["preprocess"], dict) and isinstance(run["embedding"]["pooling"], dict)


def test_an_unreachable_server_is_one_line_and_retryable(trained: dict, tmp_path: Path) -> None:
    dump = make_dumps(trained, tmp_path / "dumps", ["d"], per_dump=1) / "d"
    result = warm.run(
        [*warm.CLI, "score", str(dump), "--out", str(tmp_path / "out"), "--model", str(trained["model"])],
        capture_output=True, text=True, env={**os.environ, "PREFECT_API_URL": "http://127.0.0.1:1/api"},
    )  # fmt: skip
    assert result.returncode == 75, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "the Prefect server at http://127.0.0.1:1/api does not answer" in lines[0]
    assert "--no-prefect" in lines[0] and not (tmp_path / "out").exists()


def test_two_dumps_of_one_name_never_share_an_artifact_history(tmp_path: Path) -> None:
    from faceaudit.flows.run_log import artifact_key

    first, second = tmp_path / "site-a" / "2026-12-01", tmp_path / "site-b" / "2026-12-01"
    assert artifact_key("verdicts", first) != artifact_key("verdicts", second)
    assert artifact_key("verdicts", first).startswith("verdicts-2026-12-01-")
    assert artifact_key("verdicts", first) == artifact_key("verdicts", str(first))


def test_a_result_the_api_lost_is_read_back_from_the_report(trained: dict, tmp_path: Path) -> None:
    """A state a flow returned itself can come back from the API without its data (Prefect 3.8.8,
    intermittently): the night then reads the dump's run.json, and never calls the dump failed."""
    from prefect.states import Completed

    from faceaudit.flows.nightly_flow import report_run
    from faceaudit.flows.orchestration import ResultLost, result_of

    with pytest.raises(ResultLost, match="report up to date"):
        result_of(Completed(message="report up to date (2 files, model x, same parameters)"))
    report = tmp_path / "report"
    report.mkdir()
    (report / "run.json").write_text(json.dumps({"files": 2, "counts": {"real": 2}}))
    assert report_run(report, up_to_date=True) == {"files": 2, "counts": {"real": 2}, "up_to_date": True}
