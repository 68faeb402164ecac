import importlib

import pytest

from circtune._cli import run_main


@pytest.mark.parametrize(
    ("module", "argv", "match"),
    [
        ("circtune.search.cli", ["--trials", "x"], "argument --trials: invalid int value: 'x'"),
        ("circtune.train", [], "the following arguments are required: --config"),
        ("circtune.compare", ["--seeds", "1"], "--seeds must be at least 2"),
        ("circtune.compare", ["--sizes", "4,4"], "sizes must be distinct"),
        ("circtune.data.cli", ["generate", "--grid"], "argument --grid: expected one argument"),
        ("circtune.data.cli", ["frobnicate"], "invalid choice: 'frobnicate'"),
        ("circtune.cluster.__main__", ["check", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str], module: str, argv: list[str], match: str) -> None:
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as stopped:
        run_main(main, argv)
    assert stopped.value.code == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error: python -m circtune.")
    assert match in lines[0]
    assert lines[0].endswith("--help")
    assert captured.out == ""


@pytest.mark.parametrize("module", ["circtune.train", "circtune.compare"])
def test_out_naming_file_rejected_first(tmp_path, capsys: pytest.CaptureFixture[str], module: str) -> None:
    # the default dataset is never loaded: the --out check comes first
    existing = tmp_path / "model.txt"
    existing.write_text("keep")
    config = tmp_path / "config.yaml"
    config.write_text("model/latent_dim: 4\n")
    main = importlib.import_module(module).main
    assert run_main(main, ["--config", str(config), "--out", str(existing)]) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert "is a file, not a folder" in lines[0]
    assert existing.read_text() == "keep"


@pytest.mark.parametrize(
    ("module", "argv"),
    [
        ("circtune.train", ["--config", "{config}", "--out", "{file}/model"]),
        ("circtune.compare", ["--config", "{config}", "--out", "{file}/comparison"]),
        ("circtune.data.cli", ["generate", "--out", "{file}/x.h5", "--grid", "2,3,3"]),
        ("circtune.data.cli", ["generate", "--out", "{folder}", "--grid", "2,3,3", "--force"]),
        ("circtune.data.cli", ["inspect", "{folder}/absent.h5", "--plot", "{file}/iv.png"]),
        ("circtune.data.ngspice.cli", ["{folder}", "--devices", "nfet_01v8", "--grid", "1", "3", "3"]),
        ("circtune.data.ngspice.cli", ["{file}/x.h5", "--devices", "nfet_01v8", "--grid", "1", "3", "3"]),
    ],
)
def test_output_path_through_file_rejected(
    tmp_path, capsys: pytest.CaptureFixture[str], module: str, argv: list[str]
) -> None:
    existing = tmp_path / "afile"
    existing.write_text("keep")
    folder = tmp_path / "folder"
    folder.mkdir()
    config = tmp_path / "config.yaml"
    config.write_text("model/latent_dim: 4\n")
    arguments = [item.format(config=config, file=existing, folder=folder) for item in argv]
    main = importlib.import_module(module).main
    assert run_main(main, arguments) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("error:")
    assert existing.read_text() == "keep"
    assert list(folder.iterdir()) == []
    assert sorted(path.name for path in tmp_path.iterdir()) == ["afile", "config.yaml", "folder"]
