"""`task=validate` with bad inputs: one line naming the field and exit 2, before any work."""
import re

import pytest

from tests.cli.runner import run_cli

# Refusals before any work (compositions, validation, a small CSV or JSON read by pandas' C parser:
# one thread, no subprocess): these run beside the realtime tests (tests/conftest.py).
pytestmark = pytest.mark.quiet

GOOD = "max_num_seqs,avg_batch_size,avg_output_len,energy_per_token_j,p90_itl_ms\n8,7.9,400,0.45,7.7\n"


@pytest.mark.parametrize("content, override, field", [
    (None, [], "validate.measurements"),
    ("max_num_seqs,avg_batch_size\n8,7.9\n", [], "validate.measurements"),
    (GOOD, ["validate.model=gpt5"], "validate.model"),
    (GOOD, ["validate.gpu=tpu"], "validate.gpu"),
    (GOOD, ["validate.itl_slo_s=0"], "validate.itl_slo_s"),
    (GOOD, ["validate.itl_slo_s=-0.05"], "validate.itl_slo_s"),
    # A blank GPU count and text in an optional numeric column: refused, never a traceback.
    (GOOD.replace("p90_itl_ms\n", "p90_itl_ms,num_gpus\n").replace("7.7\n", "7.7,\n"), [],
     "validate.measurements='.*column num_gpus"),
    (GOOD.replace("p90_itl_ms\n", "p90_itl_ms,avg_power_w\n").replace("7.7\n", "7.7,lots\n"), [],
     "validate.measurements='.*column avg_power_w"),
    (GOOD, ["validate.runtime_reserve_gib=-1"], "validate.runtime_reserve_gib"),
    # Rows no server measured: refused, never a traceback, a truncated batch or a silent choice of row.
    (GOOD.replace("8,7.9", "inf,7.9"), [], "validate.measurements='.*max_num_seqs must be positive finite"),
    (GOOD.replace("0.45", "inf"), [], "validate.measurements='.*energy_per_token_j must be positive finite"),
    (GOOD.replace("8,7.9", "64.7,60"), [], "validate.measurements='.*max_num_seqs must be a whole number"),
    (GOOD + "8,7.8,390,0.5,7.9\n", [], "validate.measurements='.*max_num_seqs 8 appears in more than one row"),
    (GOOD.replace("8,7.9", "8,50"), [], "validate.measurements='.*avg_batch_size 50 is more than max_num_seqs 8"),
    (GOOD.replace("p90_itl_ms\n", "p90_itl_ms,median_itl_ms\n").replace("7.7\n", "7.7,9.1\n"), [],
     "validate.measurements='.*p90_itl_ms 7.7 is below median_itl_ms 9.1"),
    (GOOD.replace("p90_itl_ms\n", "p90_itl_ms,energy_per_token_j\n").replace("7.7\n", "7.7,0.5\n"), [],
     "validate.measurements='.*energy_per_token_j appear more than once"),
    ("dir", [], "validate.measurements='.*is a directory"),
    # A refit of five or more parameters on one operating point.
    (GOOD, ["validate.calibration=refit"], "validate.calibration='refit': fits \\d parameters .* needs at least as many rows"),
    # A row vLLM could not have run: Qwen3-32B on one H100 at 3,072 requests leaves some KV cache (3.2 GiB,
    # before any runtime reserve) but not the 5 GiB of one 20,480-token request once its logits are reserved.
    (GOOD.replace("8,7.9", "3072,3000"), ["validate.model=qwen3_32b"], "validate.measurements='.*max_num_seqs 3072: "
     r"qwen3_32b on 1 x h100_sxm leaves 3\.\d\d GiB.*needs 5\.00 GiB \(vLLM would not start\)"),
])
def test_bad_validate_input_is_one_line_naming_the_field(tmp_path, content, override, field):
    path = tmp_path / "m.csv"
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_text(content)
    results = tmp_path / "results"
    base = {"validate.model": "llama3_8b", "validate.gpu": "h100_sxm"}
    base.update(dict(o.split("=", 1) for o in override))
    ran = run_cli("task=validate", f"validate.measurements={path}", f"results_dir={results}",
                  *(f"{k}={v}" for k, v in base.items()))
    assert ran.code == 2, ran.stderr
    lines = ran.stderr.strip().splitlines()
    assert len(lines) == 1 and re.match(f"bench: invalid {field}", lines[0]), ran.stderr
    if field == "validate.model":  # an unknown model: the line lists the presets and says ids are taken
        assert "llama3_8b" in lines[0] and "qwen3_14b" in lines[0] and "Hugging Face id" in lines[0]
    assert not (results / "validate").exists()
