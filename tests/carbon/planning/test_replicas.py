"""How many GPUs one replica spans, as the candidates and the report's device lines both take it."""
from bench.carbon import serving
from bench.carbon.planning.run import replica_gpus


def test_a_replica_spans_a_power_of_two_gpus_with_room_for_kv():
    small, large = serving.PRESETS["llama3_1_8b"], serving.PRESETS["llama3_1_70b"]
    assert replica_gpus(small.weight_bytes, "h100_sxm") == 1
    assert replica_gpus(large.weight_bytes, "h100_sxm") == 2  # 141 GB of weights x 1.2 over 85.5 GB a GPU
    assert replica_gpus(large.weight_bytes, "l4") == 8  # 24 GB each: 7.0 rounds up to the next power of two
    gemma = serving.PRESETS["gemma3_27b"]
    assert replica_gpus(gemma.weight_bytes, "l4") == 4  # 2.8 L4s of weights and spare: three rounds up to four
    assert replica_gpus(large.weight_bytes, "h200_sxm") == 2  # the weights alone fit one H200; with 20% spare they do not
    # and a two-GPU H100 replica's method says how its all-reduce is costed
    assert "TP all-reduce: model" in serving.datasheet("h100_sxm", replica_gpus(large.weight_bytes, "h100_sxm")).method
