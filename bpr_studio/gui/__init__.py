"""PyQt5 only: the main window, canvas, panels, tools and the background refinement worker."""
