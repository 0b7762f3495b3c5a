"""ONNX export of AudioMamba models and ONNX Runtime scoring (``aum export``, ``aum score-onnx``)."""
