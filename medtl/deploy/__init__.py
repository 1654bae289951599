"""The trained model outside the lab: ``predict`` on image files, ``export`` to ONNX, the model card."""
