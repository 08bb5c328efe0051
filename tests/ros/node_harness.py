"""A RankSamNode plus a peer node spinning in a background executor, for the ROS tests."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from ranksam_ros.data.folder import read_rgb
from ranksam_ros.ros.conversions import rgb_to_image
from ranksam_ros.ros.executor import SpinningExecutor
from ranksam_ros.ros.main import shut_down
from ranksam_ros.ros.node import RankSamNode

ROOT = Path(__file__).resolve().parents[2]
FRAMES = sorted((ROOT / "ranksam_ros/assets/camvid_val/images").iterdir())
EAGER = [  # a random micro model: accept every prompt so instances exist
    "pipeline.prompts.threshold=0.0",
    "pipeline.prompts.min_pred_iou=0.0",
    "pipeline.prompts.max_prompts=8",
    "pipeline.min_area=0",
    "pipeline.mask_threshold=-8.0",
    "pipeline.box_mask_threshold=-8.0",
]


def make_model_dir(tmp_path_factory, make_micro_model):
    """The session's micro model plus a CamVid prompt predictor, saved as a model directory."""
    import torch

    from ranksam_ros.config import CAMVID_CLASSES
    from ranksam_ros.modeling.prompt_predictor import build_prompt_predictor, save_prompt_predictor
    from ranksam_ros.modeling.registry import save_model

    root = tmp_path_factory.mktemp("micro-model")
    model = make_micro_model()
    torch.manual_seed(1234)  # the same prompt predictor whichever test builds it first
    save_model(root / "model.safetensors", model)
    save_prompt_predictor(
        root / "prompt_predictor.safetensors", build_prompt_predictor(model.arch, CAMVID_CLASSES)
    )
    return root


def _param(text) -> Parameter:
    if isinstance(text, list):
        return Parameter(text[0], value=text[1])
    name, value = text.split("=", 1)
    for cast in (int, float):
        try:
            return Parameter(name, value=cast(value))
        except ValueError:
            continue
    if value in ("true", "false"):
        return Parameter(name, value=value == "true")
    return Parameter(name, value=value)


class Harness:
    """The node and a peer node spinning in a background executor of a private context.

    Args:
        context: The rclpy context.
        model_dir: The model the node loads.
        overrides: ``name=value`` (or ``[name, value]``) parameter overrides.
        autostart: Configure and activate (both must succeed).
        node_class: ``RankSamNode`` or a subclass.
    """

    def __init__(
        self,
        context,
        model_dir: Path,
        overrides: list[str],
        autostart: bool = True,
        node_class: type[RankSamNode] = RankSamNode,
    ) -> None:
        params = [
            _param(t)
            for t in [f"model={model_dir}", "adapter=none", "threads=1", *EAGER, *overrides]
        ]
        self.node = node_class(context=context, parameter_overrides=params)
        self.peer = Node("peer", context=context)
        self.executor = SpinningExecutor(3, context=context, name="harness-spin")
        self.executor.add_node(self.node)
        self.executor.add_node(self.peer)
        self.executor.start()
        if autostart:
            assert self.node.trigger_configure() == TransitionCallbackReturn.SUCCESS
            assert self.node.trigger_activate() == TransitionCallbackReturn.SUCCESS
        self.received: dict[str, list] = {}

    def listen(self, msg_type, topic: str, qos=10) -> list:
        self.received[topic] = box = []
        self.peer.create_subscription(msg_type, topic, box.append, qos)
        return box

    def close(self) -> int:
        """Stop as ``ranksam_node`` does; returns its exit code for the shutdown."""
        code = shut_down(self.node, self.executor)
        self.peer.destroy_node()
        return code


def logged(console: str, level: str, text: str) -> bool:
    """True when the node's console log (captured stderr) has ``text`` at ``level`` (``ERROR``).

    Read from the console rather than ``/rosout``: rcl keys rosout publishers by node name,
    so with the many same-named nodes of a test session a late destroy can unhook a newer
    node's rosout.
    """
    return any(f"[{level}]" in line and text in line for line in console.splitlines())


def harness_factory_impl(ros_context, model_dir):
    made = []

    def make(*overrides: str, autostart: bool = True, node_class=RankSamNode) -> Harness:
        made.append(Harness(ros_context, model_dir, list(overrides), autostart, node_class))
        return made[-1]

    yield make
    for harness in made:
        harness.close()
        assert harness.executor.callback_errors == 0, "a callback raised (see the log)"


def wait_for(predicate, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def _frame(index: int, sec: int) -> tuple[np.ndarray, Image]:
    rgb = read_rgb(FRAMES[index])
    header = Header(frame_id="camera_optical")
    header.stamp.sec, header.stamp.nanosec = sec, 123
    return rgb, rgb_to_image(rgb, header)


def _publish_until(pub, msg, received: list, count: int, timeout: float = 20.0) -> bool:
    """Publish (re-sending while discovery settles) until ``count`` outputs arrived."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and len(received) < count:
        pub.publish(msg)
        wait_for(lambda: len(received) >= count, timeout=0.5)
    return len(received) >= count
