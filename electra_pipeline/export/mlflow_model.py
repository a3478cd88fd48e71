"""The MLflow pyfunc definition of an ONNX export, logged as *code* (MLflow "models from code").

MLflow executes this file when loading the model; nothing is pickled, so loading a registered
version never deserialises arbitrary objects:

    mlflow.pyfunc.load_model("models:/electra-sst2@champion").predict(["a fine film"])
    # pair tasks: a table with columns text_a, text_b; question answering: question, context
"""

from __future__ import annotations

import mlflow.models
import mlflow.pyfunc
from mlflow.types.type_hints import TypeFromExample


class ElectraOnnxModel(mlflow.pyfunc.PythonModel):
    """Predicts with `inference.Predictor` over the export logged as the `export` artifact."""

    def load_context(self, context):  # type: ignore[no-untyped-def]
        from electra_pipeline.inference import Predictor

        self.predictor = Predictor.load(context.artifacts["export"])

    def predict(self, context, model_input: TypeFromExample, params=None):  # type: ignore[no-untyped-def]
        # TypeFromExample: the logged input example (texts, or pairs) is the schema, and MLflow hands
        # predict() a list like it
        if hasattr(model_input, "iloc"):  # a table: one text column, or a pair's two (question, context)
            frame = model_input
            rows = frame.iloc[:, 0].tolist() if frame.shape[1] == 1 else list(frame.itertuples(index=False, name=None))
        else:
            rows = list(model_input)
        p = self.predictor
        if p.kind == "qa":
            return [p.answer(q, c) for q, c in rows]
        if p.kind == "discriminator":
            return [p.detect(t) for t in rows]
        return p.classify([r if isinstance(r, str) else tuple(r) for r in rows])


mlflow.models.set_model(ElectraOnnxModel())
