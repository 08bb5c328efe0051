"""The graph contract: what flows into and out of the model, in numpy, at the bottom of the stack.

Training code writes graphs against it (``modeling/export_wrappers``, ``deploy/``) and every
engine reads them through it (``backends/``), so the two sides cannot drift. Nothing here
imports torch, ONNX Runtime or rclpy.

* :mod:`.names`: graph IO names;
* :mod:`.types`: :class:`ModelInfo`, :class:`Encoded`, :class:`PromptMaps`;
* :mod:`.prompts`: prompt encoding (labels, padding, box detection, mask-token selection);
* :mod:`.preprocess`: resize, normalise, pad (the only copy of the input geometry);
* :mod:`.manifest`: the export manifest (writer, verifying reader, model info);
* :mod:`.feeds`: feeding graphs and reading their outputs by name.
"""
