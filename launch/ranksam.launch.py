"""Launch the ranksam segmentation node.

    ros2 launch ranksam_ros ranksam.launch.py image:=/camera/color/image_raw
    ros2 launch ranksam_ros ranksam.launch.py image:=/camera/color/image_raw transport:=compressed \
        backend:=onnxruntime model:=/path/to/export namespace:=front

Large frames between processes need Fast DDS's shared memory segment enlarged: the launch sets
FASTRTPS_DEFAULT_PROFILES_FILE to the profile shipped in config/ unless fastdds_profile:=''.
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, OpaqueFunction, SetEnvironmentVariable
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from launch import LaunchDescription

SHARE = get_package_share_directory("ranksam_ros")

ARGUMENTS = {
    "namespace": ("", "namespace of the node and its outputs"),
    "image": ("image", "camera topic (raw Image; with transport:=compressed its /compressed twin)"),
    "transport": ("raw", "raw | compressed"),
    "params_file": (os.path.join(SHARE, "config", "ranksam.yaml"), "parameters YAML"),
    "model": ("", "override: model name, directory, checkpoint or export directory"),
    "adapter": ("", "override: gated | lora | none | adapter file"),
    "prompt_adapter": ("", "override: none | a decoder adapter set (PA-SAM, e.g. pa_sam)"),
    "backend": ("", "override: torch | onnxruntime | tensorrt"),
    "precision": ("", "override: fp32 | int8 (onnxruntime's int8 encoder)"),
    "tta": ("", "override: none | flip (frame + mirror averaged, twice the model time)"),
    "prompt_mode": ("", "override: auto | external | hybrid"),
    "overlay": ("true", "publish ~/overlay while subscribed (rate-capped)"),
    "benchmark_mode": ("false", "never drop frames for their age"),
    "autostart": ("true", "configure and activate at start (false: drive the lifecycle)"),
    "fastdds_profile": (
        os.path.join(SHARE, "config", "fastdds_large_frames.xml"),
        "'' to keep yours",
    ),
    "log_level": ("info", "debug | info | warn | error"),
}


def _node(context, *args, **kwargs):
    value = {name: LaunchConfiguration(name).perform(context) for name in ARGUMENTS}
    overrides = {
        "input.transport": value["transport"],
        "benchmark_mode": value["benchmark_mode"] == "true",
    }
    if value["overlay"] != "true":
        overrides["output.overlay_max_rate_hz"] = 0.0
    for arg, param in (
        ("model", "model"),
        ("adapter", "adapter"),
        ("prompt_adapter", "prompt_adapter"),
        ("backend", "backend"),
        ("precision", "precision"),
        ("tta", "tta"),
        ("prompt_mode", "prompts_mode"),
    ):
        if value[arg]:
            overrides[param] = value[arg]
    image = value["image"]
    actions = []
    if value["fastdds_profile"]:
        actions.append(
            SetEnvironmentVariable("FASTRTPS_DEFAULT_PROFILES_FILE", value["fastdds_profile"])
        )
    actions.append(
        Node(
            package="ranksam_ros",
            executable="ranksam_node",
            name="ranksam",
            namespace=value["namespace"],
            output="screen",
            parameters=[value["params_file"], overrides],
            remappings=[("image", image), ("image/compressed", f"{image}/compressed")],
            arguments=[] if value["autostart"] == "true" else ["--no-autostart"],
            ros_arguments=["--log-level", value["log_level"]],
        )
    )
    return actions


def generate_launch_description():
    declared = [
        DeclareLaunchArgument(name, default_value=d, description=h)
        for name, (d, h) in ARGUMENTS.items()
    ]
    return LaunchDescription([*declared, OpaqueFunction(function=_node)])
