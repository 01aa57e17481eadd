"""The demos: ``demo.py`` (pictures of predictions), ``web.py`` (the web page) and
``predictor.py`` (``VisualizationDemo``), which ``tools/demo/demo_visualize.py`` imports as
``demo.predictor``."""
