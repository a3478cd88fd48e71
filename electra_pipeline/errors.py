class PipelineError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits 2, no traceback."""


class ConfigError(PipelineError, ValueError):
    """An invalid configuration value; the message names the field."""


class DataError(PipelineError):
    """Bad input data; the message names the file (and line where known)."""


def read_json_object(path, missing: str = "missing") -> dict:
    """A JSON object from `path`, or a DataError naming the file: missing (with the `missing`
    explanation), unreadable, not UTF-8, not JSON, or JSON of another shape."""
    import json
    from pathlib import Path

    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise DataError(f"{path}: {missing}") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text (byte {e.start}), so not valid JSON") from None
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data
