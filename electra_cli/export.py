"""`electra export`: the command line of `electra_pipeline.export.onnx` (ONNX export, then optionally
MLflow logging and registration via `electra_pipeline.export.registry`).

Heavy imports (torch, onnx, onnxruntime, mlflow) happen inside functions: `electra --help`
imports this module.
"""

from __future__ import annotations

import argparse

from electra_cli.flags import HelpFormatter
from electra_pipeline.export.onnx import ATOL, ATTENTIONS, DEFAULT_OPSET, EXPORTERS, OPSETS, export_onnx


def add_cli(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a fine-tuned model or RTD discriminator to ONNX (verified against PyTorch)",
        description="Export MODEL_DIR (a fine-tuned model directory, or an HF ELECTRA discriminator) to "
                    "OUT_DIR: model.onnx with dynamic batch/sequence axes, tokenizer.json and metadata.json. "
                    "The export is kept only if ONNX Runtime matches PyTorch on real text (max abs diff "
                    "<= --atol). Serve it with `ELECTRA_MODEL_DIR=OUT_DIR bentoml serve "
                    "serving.service:ElectraService`.",
        formatter_class=HelpFormatter)
    p.add_argument("model_dir", metavar="MODEL_DIR", help="fine-tuned model directory or HF discriminator")
    p.add_argument("out_dir", metavar="OUT_DIR", help="export directory to write (replaced if it exists)")
    p.add_argument("--optimize", action="store_true",
                   help="write attention as ONNX Runtime's fused Attention op (QAttention in int8): faster on "
                        "ORT, which then is the only runtime that can load the file")
    p.add_argument("--quantize", action="store_true", help="also write model.int8.onnx (dynamic int8 weights)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset: {}-{} for torchscript, {}-{} for dynamo (which writes >= 18)".format(
                       *OPSETS["torchscript"], *OPSETS["dynamo"]))
    p.add_argument("--exporter", choices=EXPORTERS, default="torchscript", help="torch.onnx exporter")
    p.add_argument("--attention", choices=ATTENTIONS, default="explicit",
                   help="export attention as explicit maths (faster in ONNX Runtime) or as traced SDPA")
    p.add_argument("--tokenizer", metavar="FILE", help="tokenizer.json (default: MODEL_DIR/tokenizer.json)")
    p.add_argument("--atol", type=float, default=ATOL, help="max abs diff ONNX vs PyTorch accepted (finite, >= 0)")
    p.add_argument("--mlflow", action="store_true", help="log OUT_DIR as artifacts of an MLflow run")
    p.add_argument("--register", metavar="NAME", help="register in the MLflow model registry (implies --mlflow)")
    p.add_argument("--alias", default="champion",
                   help="registry alias moved to the new version when its dev score beats the holder's (every "
                        "version also gets `challenger`)")
    p.add_argument("--force-alias", action="store_true", help="move --alias to the new version whatever its score")
    p.add_argument("--tracking-uri", default=None, help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI "
                                                        "or sqlite:///mlflow.db)")
    p.add_argument("--experiment", default="electra", help="MLflow experiment")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    report = export_onnx(args.model_dir, args.out_dir, optimize=args.optimize, quantize=args.quantize,
                         opset=args.opset, exporter=args.exporter, attention=args.attention, tokenizer=args.tokenizer,
                         atol=args.atol)
    print(f"exported {report.task} ({report.kind}) -> {report.out_dir}  max_abs_diff={report.max_abs_diff:.2e}"
          + (f"  int8_max_abs_diff={report.int8_max_abs_diff:.2e} int8_agreement={report.int8_agreement}"
             if report.int8_max_abs_diff is not None else "") + f"  ({report.seconds:.1f} s)")
    if args.mlflow or args.register:
        import mlflow

        from electra_pipeline.export.registry import log_to_mlflow
        from electra_pipeline.tracking import default_tracking_uri

        mlflow.set_tracking_uri(args.tracking_uri or default_tracking_uri())
        mlflow.set_experiment(args.experiment)
        res = log_to_mlflow(report.out_dir, args.register, alias=args.alias, force=args.force_alias)
        print(f"MLflow run {res['run_id']}" + (f"; registered {args.register} version {res['version']} -> "
                                               f"{res['model_uri']}" if "model_uri" in res else ""))
        if res.get("alias_reason"):
            print(f"@{args.alias} {'moved' if res['alias_moved'] else 'kept'}: {res['alias_reason']}")
    return 0
