"""Applications built on the library: the digits demo (``onnxcompress demo``) and the MiniLM recipe
(``onnxcompress distill-minilm``), with the stage table and embedding measures only they use.

Nothing in the library imports from here; both need the ``torch`` extra.
"""
