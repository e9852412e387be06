"""mbold-tf: Model-Based Visual Planning with Self-Supervised Functional Distances (MBOLD) in TF."""
import setuptools

# The tested stack (docs/design.md, "Stack"). Pinned exactly: tf-agents 0.19.0 is its last release;
# it needs TFP 0.23 -> TF 2.15 (Keras 2, numpy < 2); scann 1.3.0 is the build for TF 2.15;
# tensorflow-metadata >= 1.16 needs protobuf 5 and breaks TFDS; an unpinned mujoco breaks dm_control.
# grpcio >= 1.75 needs typing-extensions >= 4.12; tf-agents 0.19 pins 4.5.0: unpinned, pip downloads
# every newer grpcio (22 of them on 2026-11-24) before it settles on 1.74.0.
INSTALL_REQUIRES = [
    "tensorflow==2.15.1",
    "tf-agents==0.19.0",
    "tensorflow-probability==0.23.0",
    "tensorflow-datasets==4.9.4",
    "tensorflow-metadata==1.15.0",
    "scann==1.3.0",
    "dm-control==1.0.28",
    "mujoco==3.3.0",
    "dm-env==1.6",
    "gin-config==0.5.0",
    "absl-py==2.5.1",
    "numpy==1.26.4",
    "pillow==13.0.0",
    "scipy==1.17.1",
    "grpcio==1.74.0",
    # Apache Beam: dataset builds and goal-set evaluations on Direct/Dataflow/Spark/Flink runners.
    "apache-beam==2.56.0",
]

setuptools.setup(
    name="mbold-tf",
    version="0.1.0",
    description="MBOLD (ICLR 2021) in TensorFlow: visual planning with learned dynamical distances.",
    python_requires=">=3.11,<3.12",
    packages=setuptools.find_packages(include=["mbold_tf*", "tfds_builders*", "launch*"]),
    package_data={"": ["*.gin"]},
    install_requires=INSTALL_REQUIRES,
    extras_require={
        "gpu": ["tensorflow[and-cuda]==2.15.1"],
        "test": ["pytest==9.2.0", "ruff==0.17.6"],
    },
)
