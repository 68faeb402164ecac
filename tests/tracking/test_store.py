from mlflow.tracking import MlflowClient

from circtune.tracking import store


def test_reopen_run_marks_finished_run_running(tmp_path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    experiment_id = store.ensure_experiment(uri, "reopen", workdir=tmp_path)
    run_id = store.create_parent_run(uri, experiment_id, search_id="s1", run_name="s1")
    store.finish_run(uri, run_id, "FINISHED")
    assert MlflowClient(uri).get_run(run_id).info.status == "FINISHED"

    store.reopen_run(uri, run_id)
    assert MlflowClient(uri).get_run(run_id).info.status == "RUNNING"
