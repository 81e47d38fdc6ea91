"""docedge.tools: the ``docedge`` command line, a thin layer over the library APIs."""
