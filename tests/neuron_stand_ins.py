"""Stand-ins for the Neuron tools, for tests that run the launch path on a machine without them."""


# `neuron-ls --json-output` on a trn1.2xlarge: one device with 2 cores (the shape of a capture published
# in lablup/backend.ai's Neuron plugin tests; the Neuron docs document the flag, tools/neuron-sys-tools/
# neuron-ls.rst). A trn1.32xlarge lists 16 such devices.
def neuron_ls_json(devices: int, nc_count: int = 2) -> str:
    import json

    return json.dumps(
        [
            {"neuron_device": i, "nc_count": nc_count, "memory_size": 34359738368, "neuron_processes": []}
            for i in range(devices)
        ]
    )


def stand_in_tool(folder, name: str, script: str):
    """An executable called ``name`` in ``folder`` (put on PATH by the test)."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    tool.write_text("#!/bin/sh\n" + script)
    tool.chmod(0o755)
    return tool
