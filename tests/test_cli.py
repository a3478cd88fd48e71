"""The `electra` command answers `--help` and `--version` at once: its parsers are built from
the config dataclasses and the flow's source text, never from the libraries that do the work."""

import argparse
import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# Libraries that take seconds to import; only running a command may load them.
HEAVY = ("torch", "mlflow", "prefect", "transformers", "datasets", "sklearn", "scipy", "pandas", "matplotlib",
         "onnx", "onnxruntime", "onnxscript", "tokenizers", "pyarrow", "bentoml", "safetensors", "huggingface_hub")

_EVERY_HELP = """
import argparse, contextlib, io, sys
from electra_cli import build_parser

parser = build_parser()
commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
for argv in (["--help"], ["--version"], *([name, "--help"] for name in commands)):
    with contextlib.redirect_stdout(io.StringIO()) as out, contextlib.suppress(SystemExit):
        parser.parse_args(argv)
    assert out.getvalue().strip(), argv
print(len(commands), " ".join(sorted({m.split(".")[0] for m in sys.modules} & set(HEAVY))))
"""


def test_help_and_version_import_no_heavy_library() -> None:
    """`electra --help`, `--version` and every subcommand's `--help`, in a fresh interpreter:
    none of the heavy libraries is imported (each costs seconds before the first line prints)."""
    code = f"HEAVY = {HEAVY!r}\n{_EVERY_HELP}"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    count, _, loaded = out.stdout.strip().partition(" ")
    assert int(count) >= 10, out.stdout  # every subcommand was built, pipeline and probe included
    assert loaded == "", f"building the parsers imported {loaded}"


# What an empty or unset default printed as help looks like: "()", "(small preset: )",
# "(default: None)", "(default: null)", '(default: "")', "(default: {})".
EMPTY_FRAGMENT = re.compile(r"\(\s*\)|:\s*\)|\((?:default|\w+ preset): (?:None|null|\"\"|\{\}|\[\])\)")


def every_help() -> dict[str, str]:
    """{command: its --help text, whitespace collapsed} for `electra` and each subcommand."""
    from electra_cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    return {"electra": " ".join(parser.format_help().split()),
            **{name: " ".join(p.format_help().split()) for name, p in commands.items()}}


def test_help_text_has_no_empty_fragments() -> None:
    helps = every_help()
    assert {"pretrain", "finetune", "pipeline", "probe", "corpus"} <= set(helps)
    bad = {name: EMPTY_FRAGMENT.findall(text) for name, text in helps.items() if EMPTY_FRAGMENT.search(text)}
    assert not bad, f"empty fragments in --help: {bad}"
    # the defaults that say something are still there
    assert "--train.lr FLOAT peak learning rate (after warm-up) (" in helps["pretrain"]
    assert "(default: 30522)" in helps["tokenizer"] and "(default: code)" in helps["finetune"]
    assert '(default: ["sst2"])' in helps["pipeline"]


def test_the_empty_fragment_pattern_finds_what_it_is_for() -> None:
    for noise in ("x (small preset: ) (y)", "x (default: None)", "x (default: null)", 'x (default: "")',
                  "x (default: {})", "x ()", "x (cpu preset: None)"):
        assert EMPTY_FRAGMENT.search(noise), noise
    for fine in ("x (default: 0)", "x (cpu preset: runs/pretrain)", '(default: {"lr": 0.0005})', "(default: false)"):
        assert not EMPTY_FRAGMENT.search(fine), fine


def _flow_default(path: Path, function: str, parameter: str) -> object:
    """A flow parameter's default as written in the flow's source (importing flows/ imports Prefect)."""
    fn = next(n for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
              if isinstance(n, ast.FunctionDef) and n.name == function)
    names = [a.arg for a in fn.args.args][-len(fn.args.defaults):]
    return ast.unparse(dict(zip(names, fn.args.defaults))[parameter])


def test_one_default_preset_for_pretrain_the_pretrain_flow_and_the_pipeline(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from electra_cli import main
    from electra_pipeline.modeling import presets
    from flows.params import PipelineParams

    assert presets.DEFAULT == "cpu"
    assert main(["pretrain", "--print-config"]) == 0  # a bare `electra pretrain`
    assert json.loads(capsys.readouterr().out)["preset"] == presets.DEFAULT
    run = tmp_path / "run.yaml"  # a config file that names no preset
    run.write_text("train:\n  lr: 0.002\n", encoding="utf-8")
    assert main(["pretrain", "--config", str(run), "--print-config"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["preset"] == presets.DEFAULT and resolved["train"]["lr"] == 0.002
    import flows.params

    assert flows.params.DEFAULT_PRESET == presets.DEFAULT  # every flow's default is this name
    for module, function in (("pretrain", "pretrain"), ("pipeline", "electra_pipeline"), ("compare", "electra_vs_mlm"),
                             ("study", "efficiency_study")):
        assert _flow_default(REPO / "flows" / f"{module}.py", function, "preset") == "DEFAULT_PRESET", module
    assert PipelineParams.model_fields["preset"].default == presets.DEFAULT
    assert f"else {presets.DEFAULT})" in every_help()["pretrain"]
