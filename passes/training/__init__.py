"""Training on the ONNX graph itself: a trainable PyTorch view of a graph (``graph_module``, built from
``torch_ops``) and the ``recover`` pass that distils the original model into a compressed one."""
