"""TensorFlow and Keras internals the exporter relies on, and the graph pieces it builds.

``tf_private`` (every private TensorFlow/Keras API, guarded by the supported range),
``tf1_graph`` (what TF1 tools need in each MetaGraph), ``saver`` (plain TF1 save and
restore ops), ``shards`` (checkpoint data files of at most 1 GiB), ``heap`` (what an
export leaves in the process).
"""
