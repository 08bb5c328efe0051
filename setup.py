"""ranksam_ros: an ament_python ROS 2 package that is also a pip-installable library."""

from glob import glob

from setuptools import find_packages, setup

PACKAGE = "ranksam_ros"

setup(
    name=PACKAGE,
    version="0.1.0",
    description="Robust, promptless segmentation for robots: SAM with gated-rank adapters",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(include=[PACKAGE, f"{PACKAGE}.*"]),
    package_data={
        PACKAGE: [
            "models/*/*.safetensors",
            "models/*/*.json",
            "models/*/adapters/*.safetensors",
            "assets/camvid_val/images/*",
            "assets/camvid_val/labels/*",
            "assets/camvid_val/README.md",
        ]
    },
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        (f"share/{PACKAGE}/launch", glob("launch/*.py")),
        (f"share/{PACKAGE}/config", glob("config/*.yaml") + glob("config/*.xml")),
        (f"share/{PACKAGE}/config/train", glob("config/train/*.yaml")),
    ],
    install_requires=[
        "numpy>=1.24",
        "pillow>=9",
        "scipy>=1.10",
        "threadpoolctl>=3",
        "pyyaml>=6",
        "tqdm>=4.60",
        "matplotlib>=3.6",
        "safetensors>=0.4",
        "torch>=2.1",
        "torchvision>=0.16",
        "segment-anything>=1.0",
    ],
    extras_require={
        "onnx": ["onnx>=1.15", "onnxruntime>=1.17"],
        "bags": ["rosbags>=0.10"],
        "tensorrt": ["tensorrt>=8.6,<11"],
        "eval": ["torchmetrics>=1.3", "motmetrics>=1.4"],
        "dev": [
            "torchmetrics>=1.3",
            "motmetrics>=1.4",
            "pytest>=7",
            "ruff>=0.5",
            "onnx>=1.15",
            "onnxruntime>=1.17",
            "rosbags>=0.10",
            "psutil>=5.9",
        ],
    },
    entry_points={
        "console_scripts": [
            "ranksam = ranksam_ros.cli:main",
            "ranksam_node = ranksam_ros.ros.main:main",
        ]
    },
    zip_safe=False,
)
