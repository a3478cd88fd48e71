"""Export: a fine-tuned model for serving. `onnx` writes and verifies the ONNX export (with
`ort_graph`, the graph ONNX Runtime runs faster), `registry` logs it to MLflow and moves the
champion alias, `mlflow_model` is its pyfunc definition. The top layer: nothing in the library
imports it.
"""
