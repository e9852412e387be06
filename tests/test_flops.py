"""FLOP counting and the CPU peak used by the benchmarks."""
import pytest
import tensorflow as tf

from mbold_tf.utils import flops


def test_graph_flops_counts_matmul_and_conv_exactly():
    assert flops.graph_flops(lambda a, b: tf.matmul(a, b), tf.TensorSpec([64, 128]),
                             tf.TensorSpec([128, 32])) == 2 * 64 * 128 * 32
    kernel = tf.zeros([4, 4, 3, 8])
    conv = lambda x: tf.nn.conv2d(x, kernel, strides=2, padding="SAME")
    # 32×32 outputs × 8 channels, each 4·4·3 multiply-adds
    assert flops.graph_flops(conv, tf.TensorSpec([1, 64, 64, 3])) == 2 * 32 * 32 * 8 * 4 * 4 * 3
    with pytest.raises(ValueError, match="fully defined"):
        flops.graph_flops(conv, tf.TensorSpec([None, 64, 64, 3]))


def test_utilisation_is_a_share_of_the_peak():
    peak = flops.cpu_peak_gflops()
    assert peak["peak_gflops"] == pytest.approx(
        peak["cores"] * peak["flop_per_cycle"] * peak["ghz"], rel=1e-3)
    u = flops.utilisation(peak["peak_gflops"] * 1e9 / 2, 1.0)
    assert u["fraction_of_peak"] == pytest.approx(0.5, abs=1e-3)


@pytest.mark.parametrize("vendor,flags,expected", [
    ("GenuineIntel", "fpu sse avx fma avx2 avx512f avx512bw", (64, "avx512f")),
    ("AuthenticAMD", "fpu sse avx fma avx2 avx512f", (32, "fma")),  # Zen 4: double-pumped
    ("GenuineIntel", "fpu sse avx fma avx2", (32, "fma")),
    ("GenuineIntel", "fpu sse avx", (16, "avx")),
    ("GenuineIntel", "fpu sse sse2", (8, "sse"))])
def test_the_peak_follows_the_cpu_flags(tmp_path, vendor, flags, expected):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(f"processor\t: 0\nvendor_id\t: {vendor}\ncpu MHz\t\t: 2000.000\n"
                       f"flags\t\t: {flags}\n")
    peak = flops.cpu_peak_gflops(str(cpuinfo))
    assert (peak["flop_per_cycle"], peak["vector_flag"]) == expected
    assert peak["ghz"] == 2.0
    assert peak["peak_gflops"] == pytest.approx(peak["cores"] * expected[0] * 2.0, abs=0.1)
