"""The harness around the product, not the product: ``demo`` (``make demo``), ``bench`` and
``bench_gpu`` (``make bench``), ``local_ray`` (``make local-ray``). Nothing in the library imports
them."""
