"""The README's Python examples run as written."""

import re
from pathlib import Path

README = Path(__file__).parent.parent / "README.md"


def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})


def test_readme_experiment_config_loads(tmp_path):
    """The README's TOML example is a config ``finetune experiment --config`` accepts
    (the checks of load_config: keys, types, methods, baseline, partition specs)."""
    from finetune.experiment.config import load_config

    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks
    for i, block in enumerate(blocks):
        path = tmp_path / f"readme-{i}.toml"
        path.write_text(block)
        config = load_config(path)
        assert config.baseline in {m.name for m in config.methods}
